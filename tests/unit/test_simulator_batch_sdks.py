"""The official `openai` and `anthropic` SDKs drive the simulator's vendor batch APIs (OpenAI
Files + Batches, Anthropic Message Batches) end to end: proof the wire is the vendors'."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from batchgate.simulator import RunningSimulator, start_in_thread
from tests.e2e.harness import wait_for

OPENAI_KEY = "sk-sim-good"
ANTHROPIC_KEY = "sk-ant-sim-good"
BEHAVIOUR = {
    "auth": {"openai": [OPENAI_KEY], "anthropic": [ANTHROPIC_KEY]},
    "models": {
        "gpt-4o-mini": {"batch_fail_rate": 0.3, "batch_delay_s": 0.3},
        "claude-haiku-4-5": {"batch_expire_rate": 0.3, "batch_delay_s": 0.3},
        "gemini-2.5-flash": {"batch_fail_rate": 0.3, "batch_delay_s": 0.3},
        "slow-model": {"batch_delay_s": 3600},
    },
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_in_thread(BEHAVIOUR) as running:
        yield running


def _chat_lines(n: int, model: str = "gpt-4o-mini") -> bytes:
    return b"".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": f"q {i}"}]},
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def test_openai_sdk_runs_a_batch_with_failed_lines_in_the_error_file(sim):
    client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    f = client.files.create(file=("in.jsonl", io.BytesIO(_chat_lines(40))), purpose="batch")
    assert f.purpose == "batch" and f.bytes > 0
    batch = client.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"batchgate_job": "vj_1"},
    )
    assert batch.status == "in_progress" and batch.metadata == {"batchgate_job": "vj_1"}
    done = wait_for(
        lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b, 10, "batch"
    )
    assert done.request_counts.total == 40
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    err = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert len(out) + len(err) == 40 and 0 < len(err) < 40
    assert done.request_counts.failed == len(err)
    assert all(line["response"]["status_code"] == 200 for line in out)
    assert out[0]["response"]["body"]["object"] == "chat.completion"
    assert all(line["response"]["status_code"] == 500 for line in err)
    listed = client.batches.list(limit=100)
    assert batch.id in [b.id for b in listed.data]


def test_openai_sdk_cancels_a_running_batch(sim):
    client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key=OPENAI_KEY, max_retries=0)
    f = client.files.create(
        file=("in.jsonl", io.BytesIO(_chat_lines(3, "slow-model"))), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert client.batches.retrieve(batch.id).status == "in_progress"
    assert client.batches.cancel(batch.id).status == "cancelling"
    assert client.batches.retrieve(batch.id).status == "cancelled"


def test_openai_batch_api_refuses_a_wrong_key(sim):
    client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="sk-bad", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.batches.list()


def test_anthropic_sdk_runs_a_message_batch_with_expired_lines(sim):
    client = anthropic.Anthropic(base_url=sim.base_url, api_key=ANTHROPIC_KEY, max_retries=0)
    requests = [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": f"q {i}"}],
            },
        }
        for i in range(40)
    ]
    batch = client.messages.batches.create(requests=requests)
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 40
    ended = wait_for(
        lambda: (
            (b := client.messages.batches.retrieve(batch.id)).processing_status == "ended" and b
        ),
        10,
        "message batch",
    )
    assert ended.results_url
    results = list(client.messages.batches.results(batch.id))
    kinds = [r.result.type for r in results]
    assert len(results) == 40 and set(kinds) == {"succeeded", "expired"}
    assert ended.request_counts.expired == kinds.count("expired")
    ok = next(r for r in results if r.result.type == "succeeded")
    assert ok.result.message.usage.output_tokens > 0
    page = client.messages.batches.list(limit=10)
    assert batch.id in [b.id for b in page.data]


def test_anthropic_sdk_cancels_a_message_batch(sim):
    client = anthropic.Anthropic(base_url=sim.base_url, api_key=ANTHROPIC_KEY, max_retries=0)
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "only",
                "params": {
                    "model": "slow-model",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            }
        ]
    )
    assert client.messages.batches.cancel(batch.id).processing_status == "canceling"
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 1
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["canceled"]


def test_azure_openai_sdk_runs_a_global_batch_on_the_deployment(sim):
    client = openai.AzureOpenAI(
        azure_endpoint=sim.base_url, api_key="azure-key", api_version="2024-10-21", max_retries=0
    )
    lines = b"".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/chat/completions",
                "body": {
                    "model": "gpt-4o-mini-batch",
                    "messages": [{"role": "user", "content": "q"}],
                },
            }
        ).encode()
        + b"\n"
        for i in range(5)
    )
    f = client.files.create(file=("in.jsonl", io.BytesIO(lines)), purpose="batch")
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/chat/completions", completion_window="24h"
    )
    done = wait_for(
        lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b, 10, "batch"
    )
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [line["custom_id"] for line in out] == [f"r{i}" for i in range(5)]
    assert out[0]["response"]["body"]["model"] == "gpt-4o-mini-batch"
    # Azure's own paths only: the OpenAI-shaped batch is not found under them without a version.
    r = httpx.get(sim.base_url + f"/openai/batches/{batch.id}", headers={"api-key": "k"})
    assert r.status_code == 404


def test_google_genai_sdk_runs_a_gemini_batch_with_inline_requests(sim):
    client = genai.Client(
        api_key="gemini-key",
        http_options=types.HttpOptions(base_url=sim.base_url, api_version="v1beta"),
    )
    src = [
        {
            "contents": [{"role": "user", "parts": [{"text": f"q {i}"}]}],
            "metadata": {"key": f"r{i}"},
        }
        for i in range(30)
    ]
    job = client.batches.create(
        model="gemini-2.5-flash", src=src, config={"display_name": "vj_abc"}
    )
    assert job.name.startswith("batches/") and job.display_name == "vj_abc"
    assert job.state == types.JobState.JOB_STATE_RUNNING
    done = wait_for(
        lambda: (
            (j := client.batches.get(name=job.name)).state == types.JobState.JOB_STATE_SUCCEEDED
            and j
        ),
        10,
        "gemini batch",
    )
    inlined = done.dest.inlined_responses
    assert [r.metadata["key"] for r in inlined] == [f"r{i}" for i in range(30)]
    ok = [r for r in inlined if r.response is not None]
    failed = [r for r in inlined if r.error is not None]
    assert ok and failed and len(ok) + len(failed) == 30
    assert ok[0].response.text and ok[0].response.usage_metadata.prompt_token_count > 0
    assert job.name in [j.name for j in client.batches.list(config={"page_size": 100})]
    slow = client.batches.create(model="slow-model", src=src[:2])
    client.batches.cancel(name=slow.name)
    assert client.batches.get(name=slow.name).state == types.JobState.JOB_STATE_CANCELLED
