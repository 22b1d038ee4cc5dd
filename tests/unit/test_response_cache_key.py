"""The response cache key: what would be sent, for whom; not how the JSON was spelled."""

from __future__ import annotations

import json

from batchgate.execution.cache import cache_key

BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi", "name": "x"}],
    "temperature": 0,
    "max_tokens": 16,
}


def test_key_order_and_spelling_of_the_json_do_not_change_the_key() -> None:
    reordered = json.loads(
        '{"max_tokens": 16, "temperature": 0, '
        '"messages": [{"name": "x", "content": "hi", "role": "user"}], "model": "m"}'
    )
    assert list(reordered) != list(BODY)
    key = cache_key("t", "/v1/chat/completions", BODY, "gpt-4o-mini")
    assert cache_key("t", "/v1/chat/completions", reordered, "gpt-4o-mini") == key
    assert len(key) == 64 and int(key, 16) >= 0  # a sha256 hex digest: no prompt in it


def test_the_key_is_on_the_model_sent_not_the_name_asked_for() -> None:
    as_alias = cache_key("t", "/v1/chat/completions", BODY, "gpt-4o-mini")
    other_name = {**BODY, "model": "another-alias"}
    # Two names served by the same model send the same request.
    assert cache_key("t", "/v1/chat/completions", other_name, "gpt-4o-mini") == as_alias
    assert cache_key("t", "/v1/chat/completions", BODY, "gpt-4o") != as_alias


def test_tenant_endpoint_and_every_parameter_are_in_the_key() -> None:
    key = cache_key("t", "/v1/chat/completions", BODY, "gpt-4o-mini")
    assert cache_key("u", "/v1/chat/completions", BODY, "gpt-4o-mini") != key
    assert cache_key("t", "/v1/responses", BODY, "gpt-4o-mini") != key
    assert cache_key("t", "/v1/chat/completions", {**BODY, "temperature": 1}, "gpt-4o-mini") != key
    assert cache_key("t", "/v1/chat/completions", {**BODY, "seed": 1}, "gpt-4o-mini") != key


def test_a_lone_surrogate_in_a_body_still_has_a_key() -> None:
    body = {**BODY, "messages": [{"role": "user", "content": "\ud800"}]}
    assert len(cache_key("t", "/v1/chat/completions", body, "gpt-4o-mini")) == 64
