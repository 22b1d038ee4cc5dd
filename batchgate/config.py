"""LiteLLM proxy `config.yaml` → typed deployments, fallbacks and limits.

A LiteLLM config loads unchanged. Unknown keys are ignored with a warning; wrong types are
errors that name the key. API keys stay references (`os.environ/NAME`) until a worker resolves
them at call time, so nothing secret is copied into the database or task messages.
"""

from __future__ import annotations

import logging
import os
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import accumulate
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchgate.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "os.environ/"

# LiteLLM model prefix → (adapter module, default api_base). The vendor (queue) name is the prefix.
PREFIXES: dict[str, tuple[str, str | None]] = {
    "openai": ("openai", "https://api.openai.com"),
    "azure": ("azure", None),
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "gemini": ("gemini", "https://generativelanguage.googleapis.com"),
    "hosted_vllm": ("compatible", None),
    "vllm": ("compatible", None),
    "ollama": ("compatible", "http://127.0.0.1:11434"),
    "ollama_chat": ("compatible", "http://127.0.0.1:11434"),
    "openai_compatible": ("compatible", None),
    "lm_studio": ("compatible", "http://127.0.0.1:1234"),
    "text-generation-inference": ("compatible", None),
}

DEFAULT_MAX_CONCURRENCY = 64

# The master key's own scope: a tenant named so would share the admin's files and batches.
MASTER_TENANT = "default"
RESERVED_TENANTS = frozenset({MASTER_TENANT, "admin", "system"})
# Tenant names land in URLs, logs and metrics labels: keep them plain.
TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class _Lenient(BaseModel):
    """Keep unknown keys so we can warn about them instead of failing."""

    model_config = ConfigDict(extra="allow")


class _LitellmParams(_Lenient):
    model: str
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_parallel_requests: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    input_cost_per_token: Decimal | None = Field(default=None, ge=0)
    output_cost_per_token: Decimal | None = Field(default=None, ge=0)
    # LiteLLM passes unknown litellm_params through to the provider; so do not warn about them.
    model_config = ConfigDict(extra="ignore")


class _ModelEntry(_Lenient):
    model_name: str
    litellm_params: _LitellmParams
    model_info: dict[str, Any] | None = None


class _RouterSettings(_Lenient):
    fallbacks: list[dict[str, list[str]]] = []
    context_window_fallbacks: list[dict[str, list[str]]] = []
    content_policy_fallbacks: list[dict[str, list[str]]] = []
    num_retries: int = Field(default=2, ge=0)
    # None: LiteLLM's default (3, and no cooldown for a model with a single deployment).
    allowed_fails: int | None = Field(default=None, ge=1)
    cooldown_time: float = Field(default=30.0, ge=0)
    routing_strategy: str | None = None


class _GeneralSettings(_Lenient):
    master_key: str | None = None


class _VendorSettings(_Lenient):
    max_concurrency: int = Field(default=DEFAULT_MAX_CONCURRENCY, ge=1)
    chunk_size: int | None = Field(default=None, ge=1)
    worker_concurrency: int = Field(default=2, ge=1)


class _Tenant(_Lenient):
    name: str
    api_key: str = Field(min_length=1)
    # The most any one batch of this tenant may spend (its default `max_cost_usd`).
    max_cost_usd: Decimal | None = Field(default=None, gt=0)


class _CacheSettings(_Lenient):
    default: bool = False  # whether a batch that does not say `cache` caches
    ttl_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    max_entries: int = Field(default=100_000, ge=1)


class _VendorBatch(_Lenient):
    """`batchgate_settings.vendor_batch`: the vendor batch lane (issue 15)."""

    default: bool = False  # a batch that does not say `vendor_batch` gets this
    poll_interval: float = Field(default=30.0, gt=0)  # first poll of a job, then backing off
    max_poll_interval: float = Field(default=300.0, gt=0)
    # A job not ended this long before its batch's deadline is cancelled; its lines go online.
    deadline_margin: float = Field(default=3600.0, ge=0)
    # A job recorded but not known to be submitted is looked for at the vendor (and submitted
    # if absent) only this long after it was recorded: another reconciler may still be
    # submitting it (an HTTP call can take up to 120 s).
    recover_after: float = Field(default=150.0, ge=0)
    max_jobs_in_flight: dict[str, int] = {}  # per adapter (openai, anthropic); default 20
    max_requests: dict[str, int] = {}  # per job, per adapter; the vendors' limits by default
    max_bytes: dict[str, int] = {}


class _BatchgateSettings(_Lenient):
    vendors: dict[str, _VendorSettings] = {}
    vendor_batch: _VendorBatch = _VendorBatch()
    tenants: list[_Tenant] = []
    attempt_timeout: float = Field(default=120.0, gt=0)
    cache: _CacheSettings = _CacheSettings()


class _RawConfig(_Lenient):
    model_list: list[_ModelEntry] = []
    router_settings: _RouterSettings = _RouterSettings()
    general_settings: _GeneralSettings = _GeneralSettings()
    batchgate_settings: _BatchgateSettings = _BatchgateSettings()
    litellm_settings: dict[str, Any] | None = None
    environment_variables: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    """One `model_list` entry. `id` is stable and secret-free: safe for logs, Redis and the DB."""

    id: str
    alias: str
    vendor: str
    adapter: str
    model: str
    api_base: str | None
    api_key_ref: str | None = field(repr=False)
    api_version: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel_requests: int | None = None
    timeout: float | None = None
    input_cost_per_token: Decimal | None = None
    output_cost_per_token: Decimal | None = None
    # The model's own output limit (LiteLLM's `model_info.max_output_tokens`): what a call that
    # sends no cap can produce at most, so what a budget reservation must assume.
    max_output_tokens: int | None = None

    def api_key(self) -> str | None:
        """Resolve the key now, in the calling process; never store the result."""
        return resolve_secret(self.api_key_ref)


@dataclass(frozen=True, slots=True)
class VendorLimits:
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    chunk_size: int | None = None
    worker_concurrency: int = 2

    def effective_chunk_size(self) -> int:
        # Each worker process should be able to fill the whole vendor limit on its own, so a
        # chunk's tail never starves the vendor; capped so a crash redoes little.
        return self.chunk_size or max(32, min(500, self.max_concurrency))


# The vendors' own limits per job (requests, bytes of the input file).
VENDOR_BATCH_LIMITS: dict[str, tuple[int, int]] = {
    "openai": (50_000, 200 * 1024 * 1024),
    "anthropic": (100_000, 256 * 1024 * 1024),
    "azure": (100_000, 200 * 1024 * 1024),  # global batch: per input file
    # Batch Mode with inline requests: the whole request is at most 20 MB.
    "gemini": (100_000, 20 * 1024 * 1024),
}
DEFAULT_JOBS_IN_FLIGHT = 20


@dataclass(frozen=True, slots=True)
class VendorBatchSettings:
    default: bool = False
    poll_interval: float = 30.0
    max_poll_interval: float = 300.0
    deadline_margin: float = 3600.0
    recover_after: float = 150.0
    max_jobs_in_flight: dict[str, int] = field(default_factory=dict)
    max_requests: dict[str, int] = field(default_factory=dict)
    max_bytes: dict[str, int] = field(default_factory=dict)

    def supports(self, adapter: str) -> bool:
        """Whether the lane can submit to this adapter's vendor (others run online)."""
        return adapter in VENDOR_BATCH_LIMITS

    def job_limits(self, adapter: str) -> tuple[int, int]:
        """(requests, bytes) per job: the vendor's, or lower when configured."""
        requests, size = VENDOR_BATCH_LIMITS[adapter]
        return (
            min(requests, self.max_requests.get(adapter, requests)),
            min(size, self.max_bytes.get(adapter, size)),
        )

    def jobs_in_flight(self, adapter: str) -> int:
        return self.max_jobs_in_flight.get(adapter, DEFAULT_JOBS_IN_FLIGHT)


@dataclass(frozen=True, slots=True)
class TenantKey:
    name: str
    api_key_ref: str = field(repr=False)
    # A ceiling per batch: a batch asking for more is refused, one asking nothing gets it.
    max_cost_usd: Decimal | None = None

    def api_key(self) -> str | None:
        return resolve_secret(self.api_key_ref)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The response cache: on for batches that do not say (`default`), how long an answer is
    reused, and how many answers are kept (the oldest go first)."""

    default: bool = False
    ttl_seconds: float = 7 * 24 * 3600.0
    max_entries: int = 100_000


DEFAULT_ALLOWED_FAILS = 3


@dataclass(frozen=True)
class Config:
    deployments: tuple[Deployment, ...] = ()
    fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    context_window_fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    content_policy_fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    num_retries: int = 2
    allowed_fails: int | None = None  # None: the default below, single deployments exempt
    cooldown_time: float = 30.0
    master_key_ref: str | None = field(default=None, repr=False)
    tenants: tuple[TenantKey, ...] = ()
    vendor_limits: dict[str, VendorLimits] = field(default_factory=dict)
    attempt_timeout: float = 120.0
    cache: CacheSettings = CacheSettings()
    vendor_batch: VendorBatchSettings = field(default_factory=VendorBatchSettings)
    source: str | None = None
    _by_alias: dict[str, list[Deployment]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    @property
    def aliases(self) -> list[str]:
        return sorted({d.alias for d in self.deployments})

    @property
    def vendors(self) -> list[str]:
        return sorted({d.vendor for d in self.deployments})

    def __post_init__(self) -> None:
        # Asked on every attempt: index once (the config is frozen, so it never goes stale).
        for d in self.deployments:
            self._by_alias.setdefault(d.alias, []).append(d)

    def deployments_for(self, alias: str) -> list[Deployment]:
        return list(self._by_alias.get(alias, ()))

    def deployment(self, deployment_id: str) -> Deployment:
        for d in self.deployments:
            if d.id == deployment_id:
                return d
        raise KeyError(deployment_id)

    def allowed_fails_for(self, alias: str) -> int | None:
        """Failures of one deployment of `alias` tolerated in a minute before it cools down;
        None: it never cools down. As in LiteLLM: unless `allowed_fails` is set, a model with a
        single deployment stays in rotation (benching it would fail every line that has no
        fallback), and other models allow DEFAULT_ALLOWED_FAILS."""
        if self.allowed_fails is not None:
            return self.allowed_fails
        return DEFAULT_ALLOWED_FAILS if len(self._by_alias.get(alias, ())) > 1 else None

    def vendors_for(self, alias: str) -> list[str]:
        """The vendors an alias has deployments on, in config order (a LiteLLM model name may
        load-balance over several, e.g. OpenAI + Azure)."""
        return list(dict.fromkeys(d.vendor for d in self._by_alias.get(alias, ())))

    def vendor_for(self, alias: str, idx: int) -> str:
        """The vendor queue a line of `alias` starts on. A name spread over several vendors
        gives each vendor a share of the lines in proportion to its `max_concurrency`, by line
        index (deterministic, and interleaved so both vendors start at once)."""
        vendors = self.vendors_for(alias)
        if not vendors:
            raise KeyError(alias)
        if len(vendors) == 1:
            return vendors[0]
        bounds = list(accumulate(self.limits(v).max_concurrency for v in vendors))
        return vendors[bisect_right(bounds, idx % bounds[-1])]

    def limits(self, vendor: str) -> VendorLimits:
        return self.vendor_limits.get(vendor, VendorLimits())

    def master_key(self) -> str | None:
        return resolve_secret(self.master_key_ref)

    def chain(self, alias: str, requested: Iterable[str] | None = None) -> list[str]:
        """The fallback chain for an alias: itself, then the request's `fallbacks` if it gave
        any, else the config's. As LiteLLM's router (`kwargs.get("fallbacks",
        self.fallbacks)`): request-level fallbacks replace the config's, an empty list turns
        them off; context-window and content-policy fallbacks still come from the config."""
        chain = [alias]
        rest = self.fallbacks.get(alias, ()) if requested is None else requested
        for a in rest:
            if a not in chain:
                chain.append(a)
        return chain


def unset_variable(ref: str | None) -> str | None:
    """The environment variable `ref` names, when it is unset or empty; else None."""
    if ref is None or not ref.startswith(ENV_PREFIX):
        return None
    name = ref[len(ENV_PREFIX) :]
    return None if os.environ.get(name) else name


def resolve_secret(ref: str | None) -> str | None:
    if ref is None:
        return None
    if ref.startswith(ENV_PREFIX):
        return os.environ.get(ref[len(ENV_PREFIX) :]) or None
    return ref


def _split_model(value: str, where: str) -> tuple[str, str]:
    prefix, sep, model_id = value.partition("/")
    if not sep or not model_id:
        raise ConfigError(f"{where}: model must look like '<vendor>/<model id>', got {value!r}")
    if prefix not in PREFIXES:
        known = ", ".join(sorted(PREFIXES))
        raise ConfigError(f"{where}: unknown vendor prefix {prefix!r} (known: {known})")
    return prefix, model_id


def _warn_unknown(model: BaseModel, where: str) -> None:
    for key in model.model_extra or {}:
        log.warning("config: ignoring unknown key %s%s", f"{where}." if where else "", key)
    for name, value in model:
        if isinstance(value, _Lenient):
            _warn_unknown(value, f"{where}.{name}" if where else name)


def _fallback_map(entries: list[dict[str, list[str]]], where: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        for alias, chain in entry.items():
            out[alias] = tuple(chain)
    return out


def parse_config(data: dict[str, Any] | None, source: str | None = None) -> Config:
    """Build a Config from the parsed YAML mapping."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'config'}: the top level must be a mapping")
    try:
        raw = _RawConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source or 'config'}: {loc}: {first['msg']}") from None
    _warn_unknown(raw, "")

    deployments: list[Deployment] = []
    per_alias: dict[str, int] = {}
    for i, entry in enumerate(raw.model_list):
        where = f"model_list.{i}.litellm_params.model"
        prefix, model_id = _split_model(entry.litellm_params.model, where)
        adapter, default_base = PREFIXES[prefix]
        p = entry.litellm_params
        # api_base may name an env var too (not a secret, but set per machine).
        api_base = resolve_secret(p.api_base) or default_base
        if api_base is None:
            raise ConfigError(f"model_list.{i}.litellm_params.api_base: required for {prefix}/")
        n = per_alias.get(entry.model_name, 0)
        per_alias[entry.model_name] = n + 1
        deployments.append(
            Deployment(
                id=f"{entry.model_name}#{n}",
                alias=entry.model_name,
                vendor=prefix,
                adapter=adapter,
                model=model_id,
                api_base=api_base.rstrip("/"),
                api_key_ref=p.api_key,
                api_version=p.api_version,
                rpm=p.rpm,
                tpm=p.tpm,
                max_parallel_requests=p.max_parallel_requests,
                timeout=p.timeout,
                input_cost_per_token=p.input_cost_per_token,
                output_cost_per_token=p.output_cost_per_token,
                max_output_tokens=_output_limit(entry.model_info),
            )
        )

    rs, cs = raw.router_settings, raw.batchgate_settings.cache
    cfg = Config(
        deployments=tuple(deployments),
        fallbacks=_fallback_map(rs.fallbacks, "router_settings.fallbacks"),
        context_window_fallbacks=_fallback_map(rs.context_window_fallbacks, "cw"),
        content_policy_fallbacks=_fallback_map(rs.content_policy_fallbacks, "cp"),
        num_retries=rs.num_retries,
        allowed_fails=rs.allowed_fails,
        cooldown_time=rs.cooldown_time,
        master_key_ref=raw.general_settings.master_key,
        tenants=_tenants(raw.batchgate_settings.tenants, raw.general_settings.master_key),
        vendor_limits={
            name: VendorLimits(v.max_concurrency, v.chunk_size, v.worker_concurrency)
            for name, v in raw.batchgate_settings.vendors.items()
        },
        attempt_timeout=raw.batchgate_settings.attempt_timeout,
        cache=CacheSettings(cs.default, cs.ttl_seconds, cs.max_entries),
        vendor_batch=_vendor_batch(raw.batchgate_settings.vendor_batch),
        source=source,
    )
    if cfg.cache.default and cfg.vendor_batch.default:
        raise ConfigError(
            "batchgate_settings: cache.default and vendor_batch.default cannot both be true "
            "(the response cache does not serve the vendor batch lane yet)"
        )
    aliases = set(cfg.aliases)
    for kind, mapping in (
        ("fallbacks", cfg.fallbacks),
        ("context_window_fallbacks", cfg.context_window_fallbacks),
        ("content_policy_fallbacks", cfg.content_policy_fallbacks),
    ):
        for alias, chain in mapping.items():
            for a in (alias, *chain):
                if a not in aliases:
                    raise ConfigError(f"router_settings.{kind}: unknown model_name {a!r}")
    return cfg


def _vendor_batch(raw: _VendorBatch) -> VendorBatchSettings:
    return VendorBatchSettings(
        default=raw.default,
        poll_interval=raw.poll_interval,
        max_poll_interval=max(raw.poll_interval, raw.max_poll_interval),
        deadline_margin=raw.deadline_margin,
        recover_after=raw.recover_after,
        max_jobs_in_flight=dict(raw.max_jobs_in_flight),
        max_requests=dict(raw.max_requests),
        max_bytes=dict(raw.max_bytes),
    )


def _tenants(entries: list[_Tenant], master_key_ref: str | None) -> tuple[TenantKey, ...]:
    """Tenants with plain, unique, unreserved names and keys no one else holds (references are
    compared here; the resolved keys again when the API builds its key ring)."""
    names: set[str] = set()
    keys: set[str] = {master_key_ref} if master_key_ref else set()
    out = []
    for i, t in enumerate(entries):
        where = f"batchgate_settings.tenants.{i}"
        if not TENANT_NAME.match(t.name):
            raise ConfigError(
                f"{where}.name: {t.name!r} must be 1-63 lowercase letters, digits, '.', '_' or "
                "'-', starting with a letter or digit"
            )
        if t.name in RESERVED_TENANTS:
            raise ConfigError(f"{where}.name: {t.name!r} is reserved")
        if t.name in names:
            raise ConfigError(f"{where}.name: tenant {t.name!r} is listed twice")
        if t.api_key in keys:
            raise ConfigError(f"{where}.api_key: the same key is given to another tenant or admin")
        names.add(t.name)
        keys.add(t.api_key)
        out.append(TenantKey(name=t.name, api_key_ref=t.api_key, max_cost_usd=t.max_cost_usd))
    return tuple(out)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, source=str(path))


def _output_limit(model_info: dict[str, Any] | None) -> int | None:
    value = (model_info or {}).get("max_output_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"model_info.max_output_tokens must be a positive integer, got {value!r}")
    return value
