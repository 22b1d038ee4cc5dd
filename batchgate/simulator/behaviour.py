"""Behaviour config of the simulator and the per-request fault decision.

A `Behaviour` comes from YAML or a dict (documented in `samples/simulator.yaml`): a default
`ModelBehaviour`, overrides per model (exact name first, then glob patterns in file order), the
keys each vendor requires, and a seed. `FaultPlanner.decide` turns one request (model, prompt
digest, prompt size, `#sim:` directives) into a `Decision`: which fault to inject, if any, and how
long to wait first.

Random draws are a pure function of (seed, model, prompt, how many times this prompt was already
sent to this model), not of arrival order, so a seeded run is reproducible even when a client sends
the same lines concurrently in a different order.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

VENDORS = ("openai", "azure", "anthropic", "gemini")

# Kinds a rate may draw at random; the tuple order fixes how one uniform draw maps onto kinds.
RANDOM_KINDS = (
    "rate_limit",
    "quota",
    "server_error",
    "overloaded",
    "context_length",
    "content_filter",
    "timeout",
    "trickle",
    "malformed",
)
# Kinds only `fail_always`, `fail_first_n` and directives can force.
FORCED_KINDS = ("not_found", "auth", "bad_request")
KINDS = RANDOM_KINDS + FORCED_KINDS

# batchgate's own error vocabulary (batchgate.errors.ErrorKind) is accepted as well.
_ALIASES = {
    "rate_limited": "rate_limit",
    "quota_exceeded": "quota",
    "insufficient_quota": "quota",
    "context_window_exceeded": "context_length",
    "content_filtered": "content_filter",
    "invalid_request": "bad_request",
    "authentication": "auth",
    "hang": "timeout",
}
_STATUS_KINDS = {
    400: "bad_request",
    401: "auth",
    404: "not_found",
    429: "rate_limit",
    500: "server_error",
    503: "overloaded",
    529: "overloaded",
}
_ATTEMPT_TABLE_MAX = 2_000_000
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault to inject: its kind and, when forced by a status code, that status."""

    kind: str
    status: int | None = None


def parse_fault(value: str | int) -> Fault:
    """`"rate_limit"`, `"rate_limited"`, `429` or `"502"` → a `Fault`; ValueError otherwise."""
    text = str(value).strip().lower()
    if text.isdigit():
        status = int(text)
        if not 400 <= status <= 599:
            raise ValueError(f"fault status must be 4xx or 5xx, got {status}")
        kind = _STATUS_KINDS.get(status, "server_error" if status >= 500 else "bad_request")
        return Fault(kind, status)
    kind = _ALIASES.get(text, text)
    if kind not in KINDS:
        raise ValueError(f"unknown fault {value!r}; expected a status code or one of {KINDS}")
    return Fault(kind)


class ModelBehaviour(BaseModel):
    """How one model (or the default) behaves. Times in milliseconds unless named `_s`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(0.0, ge=0)
    latency_jitter_ms: float = Field(0.0, ge=0)  # uniform extra in [0, jitter)
    errors: dict[str | int, float] = Field(default_factory=dict)  # kind -> fraction of calls
    fail_always: str | int | None = None
    fail_first_n: dict[str | int, int] = Field(default_factory=dict)  # per prompt, in order
    retry_after_s: float = Field(1.0, ge=0)
    trickle_interval_ms: float = Field(1000.0, gt=0)
    hang_s: float = Field(600.0, gt=0)  # a `timeout` closes the connection after this long
    context_window: int | None = Field(None, ge=1)  # longer prompts get the context error
    embedding_dims: int = Field(8, ge=1, le=8192)
    # Structured output gone wrong: "broken" JSON text cut in half, or "invalid" JSON that does
    # not fit the schema (tool inputs too); on the first N calls per prompt, or every call.
    bad_json: Literal["broken", "invalid"] | None = None
    bad_json_first_n: int | None = Field(None, ge=1)
    # Vendor batch APIs (OpenAI/Azure Batch, Anthropic Message Batches): a job ends this long
    # after it was created; these fractions of its lines fail (a 500, retryable) or expire.
    batch_delay_s: float = Field(0.0, ge=0)
    batch_fail_rate: float = Field(0.0, ge=0, le=1)
    batch_expire_rate: float = Field(0.0, ge=0, le=1)

    _always: Fault | None = PrivateAttr(None)
    _first_n: tuple[tuple[Fault, int], ...] = PrivateAttr(())  # (fault, cumulative attempts)
    _thresholds: tuple[tuple[float, Fault], ...] = PrivateAttr(())  # (cumulative rate, fault)

    @field_validator("errors")
    @classmethod
    def _check_errors(cls, value: dict[str | int, float]) -> dict[str | int, float]:
        for kind, rate in value.items():
            if parse_fault(kind).kind not in RANDOM_KINDS:
                raise ValueError(f"{kind!r} cannot be drawn at random; use fail_always")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate of {kind!r} must be within [0, 1], got {rate}")
        if sum(value.values()) > 1.0 + 1e-9:
            raise ValueError("error rates add up to more than 1")
        return value

    @field_validator("fail_always")
    @classmethod
    def _check_always(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_fault(value)
        return value

    @field_validator("fail_first_n")
    @classmethod
    def _check_first_n(cls, value: dict[str | int, int]) -> dict[str | int, int]:
        for kind, count in value.items():
            parse_fault(kind)
            if count < 0:
                raise ValueError(f"fail_first_n[{kind!r}] must be >= 0")
        return value

    def model_post_init(self, _context: Any) -> None:
        self._always = None if self.fail_always is None else parse_fault(self.fail_always)
        total, first_n = 0, []
        for kind, count in self.fail_first_n.items():
            total += count
            first_n.append((parse_fault(kind), total))
        self._first_n = tuple(first_n)
        # A fixed order, not the file's: the same seed maps to the same kinds.
        rates = sorted(
            ((parse_fault(k), r) for k, r in self.errors.items() if r > 0),
            key=lambda fr: (RANDOM_KINDS.index(fr[0].kind), fr[0].status or 0),
        )
        cumulative, thresholds = 0.0, []
        for fault, rate in rates:
            cumulative += rate
            thresholds.append((cumulative, fault))
        self._thresholds = tuple(thresholds)

    @property
    def counts_attempts(self) -> bool:
        return bool(self._first_n or self._thresholds or self.bad_json_first_n)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in ("errors", "fail_first_n") and isinstance(value, Mapping):
            # str keys: YAML may spell a status as 502 in one place and "502" in another
            merged[key] = {str(k): v for k, v in (*base.get(key, {}).items(), *value.items())}
        else:
            merged[key] = value
    return merged


class Behaviour(BaseModel):
    """The whole simulator config. Build with `Behaviour.from_dict` or `load_behaviour`."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    ledger_size: int = Field(1_000_000, ge=1)
    auth: dict[Literal["openai", "azure", "anthropic", "gemini"], list[str]] = Field(
        default_factory=dict
    )
    known_models: list[str] = Field(default_factory=list)  # globs; empty = every model exists
    unknown_models: list[str] = Field(default_factory=list)  # globs that get the vendor's 404
    default: ModelBehaviour = Field(default_factory=ModelBehaviour)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name or glob -> overrides

    _resolved: list[tuple[str, ModelBehaviour]] = PrivateAttr(default_factory=list)
    _exact: dict[str, ModelBehaviour] = PrivateAttr(default_factory=dict)
    _cache: dict[str, ModelBehaviour] = PrivateAttr(default_factory=dict)
    _known: dict[str, bool] = PrivateAttr(default_factory=dict)

    def model_post_init(self, _context: Any) -> None:
        base = self.default.model_dump(exclude_unset=True)
        for pattern, override in self.models.items():
            try:
                resolved = ModelBehaviour.model_validate(_merge(base, override))
            except ValidationError as exc:
                raise ValueError(f"models[{pattern!r}]: {exc}") from exc
            self._resolved.append((pattern, resolved))
            self._exact[pattern] = resolved

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Behaviour:
        return cls.model_validate(dict(data or {}))

    def for_model(self, model: str) -> ModelBehaviour:
        found = self._cache.get(model)
        if found is None:
            found = self._exact.get(model)
            if found is None:
                found = next(
                    (b for p, b in self._resolved if fnmatch.fnmatchcase(model, p)), self.default
                )
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[model] = found
        return found

    def is_known(self, model: str) -> bool:
        known = self._known.get(model)
        if known is None:
            listed = not self.known_models or any(
                fnmatch.fnmatchcase(model, p) for p in self.known_models
            )
            known = listed and not any(fnmatch.fnmatchcase(model, p) for p in self.unknown_models)
            if len(self._known) >= _CACHE_MAX:
                self._known.clear()
            self._known[model] = known
        return known

    def required_keys(self, vendor: str) -> frozenset[str] | None:
        keys = self.auth.get(vendor)  # type: ignore[call-overload]
        return frozenset(keys) if keys else None

    def public_dict(self) -> dict[str, Any]:
        """The config without key values: safe to serve over HTTP."""
        data = self.model_dump(mode="json")
        data["auth"] = {vendor: f"{len(keys)} key(s)" for vendor, keys in self.auth.items()}
        return data


def load_behaviour(path: str | Path | None) -> Behaviour:
    """Read a behaviour YAML file; `None` gives the defaults (no latency, no faults)."""
    if path is None:
        return Behaviour()
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return Behaviour.from_dict(data)


# ---------------------------------------------------------------------------------------------
# Directives: `#sim:...` words in the last user message, so one batch can mix behaviours.

_DIRECTIVE = re.compile(r"#sim:([a-z_]+)(?:=(\S+))?")


@dataclass(slots=True)
class Directives:
    fault: Fault | None = None
    first: int | None = None  # the fault applies to the first N calls of this prompt only
    retry_after_s: float | None = None
    sleep_ms: float | None = None
    tool: str | None = None  # "" = the first tool
    tokens: int | None = None  # reply length in tokens
    bad_json: str | None = None  # "broken" | "invalid", as ModelBehaviour.bad_json
    bad_json_first: int | None = None


def parse_directives(text: str) -> Directives | None:
    """Parse `#sim:` directives; malformed ones are ignored, as a vendor would ignore them."""
    if "#sim:" not in text:
        return None
    found = Directives()
    for name, value in _DIRECTIVE.findall(text):
        try:
            if name == "fail" and value:
                head, *options = value.split(":")
                found.fault = parse_fault(head)
                for option in options:
                    key, _, raw = option.partition("=")
                    if key in ("retry-after", "retry_after"):
                        found.retry_after_s = float(raw)
                    elif key in ("first", "n"):
                        found.first = int(raw)
            elif name == "sleep" and value:
                found.sleep_ms = max(0.0, float(value))
            elif name == "tool":
                found.tool = value
            elif name == "tokens" and value:
                found.tokens = max(1, int(value))
            elif name == "json" and value:
                head, _, first = value.partition(":first=")
                if head in ("broken", "invalid"):
                    found.bad_json = head
                    found.bad_json_first = int(first) if first else None
        except ValueError:
            continue
    return found


@dataclass(slots=True)
class Decision:
    fault: Fault | None
    latency_s: float
    retry_after_s: float
    behaviour: ModelBehaviour
    bad_json: str | None = None  # spoil the structured answer this way (content.spoil)


class FaultPlanner:
    """Decides each request's fate from the behaviour; holds the per-prompt attempt counts."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self._key = hashlib.sha256(str(behaviour.seed).encode()).digest()[:32]
        self._attempts: dict[int, int] = {}

    def reset(self) -> None:
        self._attempts.clear()

    def decide(
        self, model: str, digest: bytes, prompt_tokens: int, directives: Directives | None
    ) -> Decision:
        mb = self.behaviour.for_model(model)
        d = directives
        attempt = 0
        if mb.counts_attempts or (
            d is not None and (d.first is not None or d.bad_json_first is not None)
        ):
            key = hash((model, digest))
            attempt = self._attempts.get(key, 0)
            if len(self._attempts) >= _ATTEMPT_TABLE_MAX:
                self._attempts.clear()  # bounded memory; only long storms ever get here
            self._attempts[key] = attempt + 1
        draw = None
        if mb._thresholds or mb.latency_jitter_ms:
            blob = hashlib.blake2b(
                digest + model.encode() + attempt.to_bytes(8, "little"),
                key=self._key,
                digest_size=16,
            ).digest()
            draw = (int.from_bytes(blob[:8], "little") / 2**64, int.from_bytes(blob[8:]) / 2**64)

        fault = None
        if d is not None and d.fault is not None and (d.first is None or attempt < d.first):
            fault = d.fault
        elif mb._always is not None:
            fault = mb._always
        else:
            for candidate, upto in mb._first_n:
                if attempt < upto:
                    fault = candidate
                    break
        if fault is None and mb.context_window is not None and prompt_tokens > mb.context_window:
            fault = Fault("context_length")
        if fault is None and draw is not None:
            for threshold, candidate in mb._thresholds:
                if draw[0] < threshold:
                    fault = candidate
                    break

        if d is not None and d.sleep_ms is not None:
            latency = d.sleep_ms / 1000.0
        else:
            jitter = draw[1] * mb.latency_jitter_ms if draw is not None else 0.0
            latency = (mb.latency_ms + jitter) / 1000.0
        retry_after = mb.retry_after_s
        if d is not None and d.retry_after_s is not None:
            retry_after = d.retry_after_s
        return Decision(fault, latency, retry_after, mb, _bad_json(mb, d, attempt))


def _bad_json(mb: ModelBehaviour, d: Directives | None, attempt: int) -> str | None:
    """How this call's structured answer goes wrong, if it does (a directive wins)."""
    if d is not None and d.bad_json is not None:
        first = d.bad_json_first
        return d.bad_json if first is None or attempt < first else None
    first = mb.bad_json_first_n
    return mb.bad_json if first is None or attempt < first else None
