"""Behaviour config, directives, fault decisions, latency, stats and ledger of the simulator."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from batchgate.simulator import Behaviour, RunningSimulator, load_behaviour, start_in_thread
from batchgate.simulator.behaviour import Fault, FaultPlanner, parse_directives, parse_fault

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "simulator.yaml"
KEY = "sk-sim-secret-key-123"


def chat(client: httpx.Client, prompt: str, model: str = "m") -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": prompt}]},
        headers={"Authorization": f"Bearer {KEY}"},
    )


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.fixture
def running() -> Iterator[Callable[..., tuple[RunningSimulator, httpx.Client]]]:
    started: list[tuple[RunningSimulator, httpx.Client]] = []

    def start(behaviour: dict | None = None, timeout: float = 10.0):
        sim = start_in_thread(behaviour)
        client = httpx.Client(base_url=sim.base_url, timeout=timeout)
        started.append((sim, client))
        return sim, client

    yield start
    for sim, client in started:
        client.close()
        sim.stop()


# -- config ----------------------------------------------------------------------------------


def test_sample_config_loads_with_its_per_model_overrides():
    behaviour = load_behaviour(SAMPLE)
    assert behaviour.seed == 42
    assert behaviour.for_model("gpt-4o-mini").latency_ms == 100
    assert behaviour.for_model("gpt-4o-mini").errors == {"rate_limit": 0.1, "server_error": 0.0}
    assert behaviour.for_model("claude-sim").errors["overloaded"] == 0.05
    assert behaviour.for_model("flaky-1").fail_first_n == {"server_error": 2}
    assert behaviour.for_model("other").latency_ms == 50
    assert not behaviour.is_known("embed-nonexistent")
    assert behaviour.required_keys("openai") == frozenset({"sk-simulated"})
    assert behaviour.required_keys("gemini") is None
    assert "sk-simulated" not in json.dumps(behaviour.public_dict())


def test_no_config_means_no_latency_and_no_faults():
    behaviour = load_behaviour(None)
    assert behaviour.for_model("anything").latency_ms == 0
    assert behaviour.for_model("anything").errors == {}


@pytest.mark.parametrize(
    "data",
    [
        {"defaults": {}},
        {"default": {"latency": 5}},
        {"default": {"errors": {"rate_limit": 0.7, "server_error": 0.5}}},
        {"default": {"errors": {"not_found": 0.1}}},
        {"default": {"fail_always": "explode"}},
        {"models": {"m": {"fail_first_n": {"server_error": -1}}}},
        {"auth": {"openrouter": ["k"]}},
    ],
)
def test_invalid_config_is_refused(data):
    with pytest.raises(ValueError):
        Behaviour.from_dict(data)


def test_exact_model_name_wins_over_glob_and_globs_go_in_order():
    behaviour = Behaviour.from_dict(
        {
            "models": {
                "gpt-*": {"latency_ms": 1},
                "gpt-4*": {"latency_ms": 2},
                "gpt-4o": {"latency_ms": 3},
            }
        }
    )
    assert behaviour.for_model("gpt-4o").latency_ms == 3
    assert behaviour.for_model("gpt-4.1").latency_ms == 1
    assert behaviour.for_model("claude").latency_ms == 0


def test_faults_parse_from_kinds_aliases_and_status_codes():
    assert parse_fault(429) == Fault("rate_limit", 429)
    assert parse_fault("529") == Fault("overloaded", 529)
    assert parse_fault("502") == Fault("server_error", 502)
    assert parse_fault("rate_limited") == Fault("rate_limit")
    assert parse_fault("context_window_exceeded") == Fault("context_length")
    with pytest.raises(ValueError):
        parse_fault(200)


def test_directives_parse_from_prompt_text():
    found = parse_directives("label this #sim:fail=429:retry-after=2.5:first=3 #sim:sleep=40")
    assert found is not None
    assert found.fault == Fault("rate_limit", 429)
    assert (found.retry_after_s, found.first, found.sleep_ms) == (2.5, 3, 40.0)
    tools = parse_directives("#sim:tool=weather #sim:tokens=12")
    assert (tools.tool, tools.tokens) == ("weather", 12)
    assert parse_directives("#sim:tool").tool == ""
    assert parse_directives("no directives here") is None
    assert parse_directives("#sim:fail=bogus").fault is None


def test_random_faults_depend_on_the_prompt_not_on_arrival_order():
    behaviour = Behaviour.from_dict({"seed": 3, "default": {"errors": {"rate_limit": 0.5}}})
    digests = [hashlib.sha256(f"p{i}".encode()).digest() for i in range(50)]

    def outcomes(order: list[bytes]) -> dict[bytes, list[str | None]]:
        planner = FaultPlanner(behaviour)
        seen: dict[bytes, list[str | None]] = {d: [] for d in order}
        for _ in range(3):  # three attempts of each prompt
            for digest in order:
                fault = planner.decide("m", digest, 1, None).fault
                seen[digest].append(fault.kind if fault else None)
        return seen

    assert outcomes(digests) == outcomes(list(reversed(digests)))


# -- faults over HTTP ------------------------------------------------------------------------


def test_fault_rates_are_roughly_honoured_and_reproducible_with_a_seed(running):
    behaviour = {"seed": 11, "default": {"errors": {"rate_limit": 0.2, "server_error": 0.1}}}
    sim, client = running(behaviour)
    prompts = [f"line {i}" for i in range(600)]
    first = [chat(client, p).status_code for p in prompts]
    counts = Counter(first)
    assert 80 <= counts[429] <= 160  # expected 120
    assert 30 <= counts[500] <= 90  # expected 60
    assert counts[200] == 600 - counts[429] - counts[500]
    sim.reset()
    assert [chat(client, p).status_code for p in prompts] == first
    sim.set_behaviour({**behaviour, "seed": 12})
    sim.reset()
    assert [chat(client, p).status_code for p in prompts] != first


def test_fail_first_n_fails_each_prompt_in_order_then_succeeds(running):
    behaviour = {"models": {"flaky": {"fail_first_n": {"rate_limit": 1, "server_error": 2}}}}
    sim, client = running(behaviour)
    assert [chat(client, "a", "flaky").status_code for _ in range(5)] == [429, 500, 500, 200, 200]
    assert chat(client, "b", "flaky").status_code == 429  # counted per prompt
    assert chat(client, "a", "steady").status_code == 200  # and per model
    sim.reset()
    assert chat(client, "a", "flaky").status_code == 429


def test_fail_always_applies_to_matching_models_only(running):
    _sim, client = running({"models": {"down-*": {"fail_always": 503}}})
    assert chat(client, "x", "down-1").status_code == 503
    assert chat(client, "x", "down-2").status_code == 503
    assert chat(client, "x", "up").status_code == 200


def test_directives_mix_behaviours_in_one_batch(running):
    _sim, client = running()
    assert chat(client, "a #sim:fail=500").status_code == 500
    limited = chat(client, "b #sim:fail=429:retry-after=7")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
    assert chat(client, "c #sim:fail=502").status_code == 502
    retried = [chat(client, "d #sim:fail=503:first=2").status_code for _ in range(3)]
    assert retried == [503, 503, 200]
    long = chat(client, "e #sim:tokens=50").json()
    assert long["usage"]["completion_tokens"] == 50
    assert len(long["choices"][0]["message"]["content"]) == 200
    assert chat(client, "plain").status_code == 200


def test_latency_is_at_least_the_configured_time(running):
    sim, client = running({"default": {"latency_ms": 120, "latency_jitter_ms": 40}})
    for i in range(5):
        started = time.perf_counter()
        assert chat(client, f"p{i}").status_code == 200
        assert time.perf_counter() - started >= 0.12
    served = [e["t_end"] - e["t_start"] for e in sim.ledger()]
    assert min(served) >= 0.12
    assert len({round(s, 3) for s in served}) > 1  # the jitter differs per prompt


def test_sleep_directive_overrides_the_latency(running):
    _sim, client = running({"default": {"latency_ms": 0}})
    started = time.perf_counter()
    chat(client, "slow #sim:sleep=150")
    assert time.perf_counter() - started >= 0.15


def test_peak_in_flight_counts_concurrent_requests(running):
    sim, _ = running({"default": {"latency_ms": 300}})

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            headers = {"Authorization": f"Bearer {KEY}"}
            responses = await asyncio.gather(
                *(
                    client.post("/v1/chat/completions", json=body, headers=headers)
                    for _ in range(20)
                )
            )
            return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 20
    stats = sim.stats()
    assert stats["models"]["m"]["peak_in_flight"] == 20
    assert stats["models"]["m"]["in_flight"] == 0
    assert stats["models"]["m"]["calls"] == 20
    assert stats["total"]["peak_in_flight"] == 20


def test_timeout_hangs_until_the_client_gives_up(running):
    sim, client = running(timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        chat(client, "#sim:fail=timeout")
    wait_until(lambda: sim.stats()["total"]["in_flight"] == 0)
    entry = sim.ledger()[-1]
    assert (entry["status"], entry["fault"]) == (499, "timeout")


def test_trickle_sends_headers_then_the_body_slowly(running):
    sim, client = running({"models": {"slow": {"trickle_interval_ms": 1000}}}, timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        chat(client, "#sim:fail=trickle", model="slow")
    sim.set_behaviour({"default": {"trickle_interval_ms": 1}})
    answer = chat(client, "#sim:fail=trickle")
    assert answer.json()["choices"][0]["message"]["content"] == "echo: #sim:fail=trickle"


def test_malformed_is_a_200_with_broken_json(running):
    sim, client = running()
    response = chat(client, "#sim:fail=malformed")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert sim.stats()["total"]["faults"] == {"malformed": 1}


# -- stats and ledger ------------------------------------------------------------------------


def test_stats_count_calls_successes_and_errors_by_status(running):
    _sim, client = running()
    chat(client, "ok", "a")
    chat(client, "#sim:fail=429", "a")
    chat(client, "#sim:fail=500", "b")
    response = client.get("/_sim/stats").json()
    assert response["models"]["a"] == {
        "calls": 2,
        "successes": 1,
        "errors": {"429": 1},
        "faults": {"rate_limit": 1},
        "in_flight": 0,
        "peak_in_flight": 1,
    }
    assert response["total"]["calls"] == 3
    assert response["total"]["errors"] == {"429": 1, "500": 1}


def test_ledger_records_prompt_hashes_so_calls_per_line_can_be_counted(running):
    _sim, client = running()
    chat(client, "line one")
    chat(client, "line one")
    chat(client, "line two #sim:fail=500")
    ledger = client.get("/_sim/ledger").json()
    assert ledger["total"] == 3
    entries = ledger["entries"]
    assert [e["prompt_sha256"] for e in entries] == [sha("line one")] * 2 + [
        sha("line two #sim:fail=500")
    ]
    assert entries[0]["t_end"] <= entries[1]["t_start"]  # sequential calls never overlap
    assert all(e["t_start"] <= e["t_end"] for e in entries)
    assert [e["status"] for e in entries] == [200, 200, 500]
    assert entries[0]["vendor"] == "openai"
    assert entries[0]["route"] == "/v1/chat/completions"
    filtered = client.get("/_sim/ledger", params={"prompt_sha256": sha("line one")}).json()
    assert len(filtered["entries"]) == 2
    assert KEY not in json.dumps(ledger) + json.dumps(client.get("/_sim/stats").json())


def test_ledger_hashes_the_last_user_message_of_each_vendor(running):
    sim, client = running()
    client.post(
        "/v1/messages",
        json={
            "model": "claude-x",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "reply"},
                {"role": "user", "content": [{"type": "text", "text": "last"}]},
            ],
        },
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    )
    client.post(
        "/v1beta/models/gemini-x:generateContent",
        json={"contents": [{"parts": [{"text": "gem"}]}]},
        headers={"x-goog-api-key": KEY},
    )
    client.post(
        "/v1/embeddings",
        json={"model": "e", "input": "vector me"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert [e["prompt_sha256"] for e in sim.ledger()] == [sha("last"), sha("gem"), sha("vector me")]


def test_ledger_is_a_bounded_ring_buffer(running):
    _sim, client = running({"ledger_size": 5})
    for i in range(8):
        chat(client, f"p{i}")
    ledger = client.get("/_sim/ledger").json()
    assert (ledger["total"], ledger["dropped"], ledger["capacity"]) == (8, 3, 5)
    assert [e["seq"] for e in ledger["entries"]] == [3, 4, 5, 6, 7]
    assert [e["prompt_sha256"] for e in ledger["entries"]] == [sha(f"p{i}") for i in range(3, 8)]


def test_reset_clears_stats_and_ledger(running):
    _sim, client = running()
    chat(client, "x")
    assert client.post("/_sim/reset").json() == {"ok": True}
    assert client.get("/_sim/stats").json()["total"]["calls"] == 0
    assert client.get("/_sim/stats").json()["models"] == {}
    assert client.get("/_sim/ledger").json()["entries"] == []


def test_behaviour_can_be_swapped_over_http(running):
    _sim, client = running()
    assert chat(client, "x", "m").status_code == 200
    swapped = client.post("/_sim/behaviour", json={"models": {"m": {"fail_always": "quota"}}})
    assert swapped.status_code == 200
    assert chat(client, "x", "m").json()["error"]["code"] == "insufficient_quota"
    refused = client.post("/_sim/behaviour", json={"nonsense": 1})
    assert refused.status_code == 400
    assert chat(client, "x", "m").status_code == 429  # the refused config changed nothing


def test_required_keys_refuse_other_keys(running):
    _sim, client = running({"auth": {"openai": ["right"]}})
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    wrong = client.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer no"})
    right = client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": "Bearer right"}
    )
    missing = client.post("/v1/chat/completions", json=body)
    assert (wrong.status_code, right.status_code, missing.status_code) == (401, 200, 401)
