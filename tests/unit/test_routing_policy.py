"""Retry/fallback decisions, backoff and deployment choice: pure, no I/O."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from batchgate.config import Config, Deployment
from batchgate.errors import (
    ERROR_CLASSES,
    AuthenticationError,
    ContentFiltered,
    ContextWindowExceeded,
    ErrorKind,
    InvalidRequest,
    NotFound,
    Overloaded,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    ServerError,
    Timeout,
    UnsupportedParameter,
    VendorRefused,
)
from batchgate.routing.policy import (
    action_for,
    backoff_delay,
    choose_deployment,
    decide,
    next_aliases,
    next_vendor,
)

TRANSIENT = [RateLimited, Overloaded, ServerError, Timeout]


def _decide(error: ProviderError, attempts: int = 1, num_retries: int = 2):
    return decide(error, attempts_on_model=attempts, num_retries=num_retries, rng=random.Random(7))


def _dep(id_: str, alias: str = "a") -> Deployment:
    return Deployment(
        id=id_, alias=alias, vendor="openai", adapter="openai", model="m", api_base="http://x",
        api_key_ref=None,
    )  # fmt: skip


# -- decide ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", TRANSIENT)
def test_transient_errors_retry_on_the_same_model(cls: type[ProviderError]) -> None:
    d = _decide(cls("boom"), attempts=1)
    assert d.action == "retry"
    assert d.delay >= 0
    assert cls.kind.value in d.reason


@pytest.mark.parametrize("cls", TRANSIENT)
@pytest.mark.parametrize("num_retries", [0, 1, 2, 5])
def test_retries_stop_after_num_retries_plus_one_calls(
    cls: type[ProviderError], num_retries: int
) -> None:
    calls = 0
    while True:
        calls += 1  # a call was made and failed with `cls`
        d = _decide(cls("boom"), attempts=calls, num_retries=num_retries)
        if d.action != "retry":
            break
    assert d.action == "fallback"
    assert calls == num_retries + 1


def test_quota_exceeded_falls_back_even_with_retries_left() -> None:
    d = _decide(QuotaExceeded("billing", status_code=429, retry_after=1.0), attempts=1)
    assert d.action == "fallback"
    assert d.delay == 0


@pytest.mark.parametrize(
    "cls", [ContextWindowExceeded, NotFound, ContentFiltered, UnsupportedParameter, VendorRefused]
)
def test_model_specific_errors_fall_back_without_retry(cls: type[ProviderError]) -> None:
    assert _decide(cls("no"), attempts=1, num_retries=5).action == "fallback"


@pytest.mark.parametrize("cls", [InvalidRequest, AuthenticationError])
def test_request_and_credential_errors_fail_the_item(cls: type[ProviderError]) -> None:
    d = _decide(cls("bad"), attempts=1, num_retries=5)
    assert d.action == "fail"
    assert d.delay == 0


def test_every_error_kind_has_an_explicit_action() -> None:
    expected = {
        ErrorKind.rate_limited: "retry",
        ErrorKind.overloaded: "retry",
        ErrorKind.server_error: "retry",
        ErrorKind.timeout: "retry",
        ErrorKind.invalid_output: "retry",
        ErrorKind.quota_exceeded: "fallback",
        ErrorKind.context_window_exceeded: "fallback",
        ErrorKind.not_found: "fallback",
        ErrorKind.content_filtered: "fallback",
        ErrorKind.unsupported_parameter: "fallback",
        ErrorKind.vendor_refused: "fallback",
        ErrorKind.invalid_request: "fail",
        ErrorKind.authentication: "fail",
    }
    assert set(expected) == set(ErrorKind)
    for kind, action in expected.items():
        assert action_for(kind) == action
        assert _decide(ERROR_CLASSES[kind]("x"), attempts=1).action == action


def test_retry_waits_at_least_retry_after() -> None:
    d = _decide(RateLimited("slow down", retry_after=7.5), attempts=1)
    assert d.action == "retry"
    assert d.delay >= 7.5


# -- backoff ---------------------------------------------------------------------------------


def test_backoff_never_below_retry_after() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        for retry_after in (0.1, 2.0, 45.0):  # 45 > cap: the vendor's word still wins
            assert backoff_delay(attempt, retry_after, rng=rng) >= retry_after


def test_backoff_ignores_missing_or_zero_retry_after() -> None:
    rng = random.Random(2)
    for retry_after in (None, 0.0, -1.0):
        assert 0 <= backoff_delay(1, retry_after, base=0.5, rng=rng) <= 0.5


def test_backoff_grows_with_attempts() -> None:
    rng = random.Random(3)
    means = [
        statistics.fmean(backoff_delay(a, None, base=0.5, cap=1000, rng=rng) for _ in range(2000))
        for a in range(1, 7)
    ]
    assert all(later > 1.5 * earlier for earlier, later in itertools.pairwise(means))


def test_backoff_is_jittered() -> None:
    rng = random.Random(4)
    delays = [backoff_delay(4, None, base=0.5, rng=rng) for _ in range(200)]
    assert len(set(delays)) > 190
    assert min(delays) < 0.5 < 3.5 < max(delays)  # spread over [0, 4]


def test_backoff_is_capped() -> None:
    rng = random.Random(5)
    delays = [backoff_delay(a, None, base=0.5, cap=30, rng=rng) for a in range(1, 200)]
    assert max(delays) <= 30
    assert max(delays[20:]) > 20  # the cap is reached, not undershot


def test_backoff_is_deterministic_for_a_seeded_rng() -> None:
    first = [backoff_delay(a, 1.0, rng=random.Random(9)) for a in range(1, 5)]
    again = [backoff_delay(a, 1.0, rng=random.Random(9)) for a in range(1, 5)]
    assert first == again


# -- next_aliases ----------------------------------------------------------------------------

CONFIG = Config(
    fallbacks={"small": ("mid", "other")},
    context_window_fallbacks={"small": ("large", "mid"), "large": ("small",)},
    content_policy_fallbacks={"strict": ("lenient",)},
)


def test_context_window_fallbacks_come_first_then_the_chain_deduped() -> None:
    got = next_aliases(ErrorKind.context_window_exceeded, "small", ["mid", "other"], CONFIG)
    assert got == ["large", "mid", "other"]


def test_context_window_without_fallbacks_continues_the_chain() -> None:
    got = next_aliases(ErrorKind.context_window_exceeded, "mid", ["other"], CONFIG)
    assert got == ["other"]


def test_context_window_fallbacks_do_not_loop_back_to_tried_aliases() -> None:
    got = next_aliases(ErrorKind.context_window_exceeded, "large", [], CONFIG, tried=["small"])
    assert got == []


def test_content_filter_uses_content_policy_fallbacks_only() -> None:
    got = next_aliases(ErrorKind.content_filtered, "strict", ["mid", "other"], CONFIG)
    assert got == ["lenient"]


def test_content_filter_without_content_policy_fallbacks_ends_the_item() -> None:
    assert next_aliases(ErrorKind.content_filtered, "small", ["mid", "other"], CONFIG) == []


@pytest.mark.parametrize(
    "kind", [ErrorKind.quota_exceeded, ErrorKind.not_found, ErrorKind.rate_limited]
)
def test_other_errors_continue_with_the_remaining_chain(kind: ErrorKind) -> None:
    assert next_aliases(kind, "small", ["mid", "other"], CONFIG) == ["mid", "other"]


def test_remaining_chain_never_repeats_the_failed_alias() -> None:
    got = next_aliases(ErrorKind.quota_exceeded, "small", ["mid", "small", "mid"], CONFIG)
    assert got == ["mid"]


# -- choose_deployment -----------------------------------------------------------------------


def test_choose_deployment_skips_cooling_ones() -> None:
    deps = [_dep("a#0"), _dep("a#1"), _dep("a#2")]
    rng = random.Random(6)
    picked = {choose_deployment(deps, {"a#0", "a#2"}, rng).id for _ in range(50)}
    assert picked == {"a#1"}


def test_choose_deployment_spreads_over_healthy_ones() -> None:
    deps = [_dep("a#0"), _dep("a#1"), _dep("a#2")]
    rng = random.Random(8)
    picked = [choose_deployment(deps, {"a#1"}, rng).id for _ in range(400)]
    assert set(picked) == {"a#0", "a#2"}
    assert 120 < picked.count("a#0") < 280


def test_choose_deployment_returns_none_when_all_cooling() -> None:
    deps = [_dep("a#0"), _dep("a#1")]
    assert choose_deployment(deps, {"a#0", "a#1"}, random.Random(0)) is None
    assert choose_deployment([], set(), random.Random(0)) is None


# -- next_vendor -------------------------------------------------------------------------------


def test_next_vendor_cycles_through_a_load_balanced_names_vendors() -> None:
    assert next_vendor(["openai", "azure"], "openai") == "azure"
    assert next_vendor(["openai", "azure"], "azure") == "openai"
    assert next_vendor(["openai", "azure", "gemini"], "azure") == "gemini"
    assert next_vendor(["openai", "azure"], "anthropic") == "openai"


def test_next_vendor_is_none_for_a_single_vendor_name() -> None:
    assert next_vendor(["openai"], "openai") is None
    assert next_vendor([], "openai") is None


def test_invalid_output_is_re_asked_at_once_then_falls_back() -> None:
    from batchgate.errors import InvalidOutput

    err = InvalidOutput("the answer is not valid JSON", retry_after=5.0)
    first = _decide(err, attempts=1, num_retries=2)
    assert (first.action, first.delay) == ("retry", 0.0)
    assert _decide(err, attempts=2, num_retries=2).action == "retry"
    assert _decide(err, attempts=3, num_retries=2).action == "fallback"
