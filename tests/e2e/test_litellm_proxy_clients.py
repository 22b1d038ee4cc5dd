"""What LiteLLM's own proxy tests do to a proxy on `http://host:4000` (no `/v1`), replayed
against batchgate with the OpenAI SDK: fine-tune and batch files, `custom_llm_provider` in every
call, download headers, batches on OpenAI and Azure model names, cancel, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import wait_for, write_jsonl

pytestmark = pytest.mark.e2e

KEY = "sk-1234"


def config(base_url: str) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "gpt-4o-2024-05-13",
                "litellm_params": {
                    "model": "openai/gpt-4o-2024-05-13",
                    "api_base": f"{base_url}/v1",
                    "api_key": "sk-sim",
                },
            },
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {
                    "model": "azure/gpt-4o-mini",
                    "api_base": base_url,
                    "api_version": "2024-10-21",
                    "api_key": "sk-sim",
                },
            },
        ],
        "general_settings": {"master_key": KEY},
    }


def json_line(model: str, url: str) -> dict[str, Any]:
    return {
        "custom_id": "ae006110bb364606||/workspace/saved_models/some-model",
        "method": "POST",
        "url": url,
        "body": {
            "model": model,
            "temperature": 0,
            "max_tokens": 64,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "Evaluate this. Respond in json"}],
        },
    }


def test_litellm_proxy_client_calls_work_unchanged(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 5}})
    system = make_system(config(sim.base_url), reconcile_interval=0.5)
    base = f"http://127.0.0.1:{system.port}"
    client = openai.OpenAI(api_key=KEY, base_url=base)  # a LiteLLM proxy's base: no /v1

    # Files: a fine-tune file round trip, with the download headers LiteLLM's tests check.
    content = b'{"prompt": "Hello", "completion": "Hi"}'
    uploaded = client.files.create(purpose="fine-tune", file=content)
    assert uploaded.purpose == "fine-tune"
    assert uploaded.id in [f.id for f in client.files.list()]
    assert client.files.retrieve(uploaded.id).filename == uploaded.filename
    got = client.files.content(uploaded.id)
    assert got.content == content
    headers = got.response.headers
    assert headers["content-type"] == "application/octet-stream"
    assert int(headers["content-length"]) == len(content)
    assert uploaded.filename in headers["content-disposition"]
    assert headers["x-request-id"]
    assert client.files.delete(uploaded.id).deleted is True
    # The same upload as a raw multipart form, on the /v1 path.
    raw = httpx.post(
        f"{base}/v1/files",
        headers={"Authorization": f"Bearer {KEY}"},
        data={"purpose": "fine-tune"},
        files={"file": ("mydata.jsonl", content)},
    )
    assert raw.status_code == 200 and raw.json()["filename"] == "mydata.jsonl"

    # Batches on each vendor, with LiteLLM's provider hint everywhere it sends it.
    for provider, model, url in (
        ("openai", "gpt-4o-2024-05-13", "/v1/chat/completions"),
        ("azure", "gpt-4o-mini", "/chat/completions"),
    ):
        hint = {"custom_llm_provider": provider}
        path = write_jsonl(tmp_path / f"{provider}.jsonl", [json_line(model, url)])
        with open(path, "rb") as fp:
            f = client.files.create(file=fp, purpose="batch", extra_body=hint)
        batch = client.batches.create(
            input_file_id=f.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"description": str(path)},
            extra_body=hint,
        )
        done = wait_for(
            lambda b=batch, h=hint: (
                (r := client.batches.retrieve(b.id, extra_body=h)).status == "completed" and r
            ),
            60,
            f"the {provider} batch",
        )
        assert done.metadata == {"description": str(path)}
        out = client.files.content(done.output_file_id, extra_body=hint)
        (line,) = [json.loads(x) for x in out.content.splitlines()]
        assert line["custom_id"] == json_line(model, url)["custom_id"]
        assert json.loads(line["response"]["body"]["choices"][0]["message"]["content"])
        assert line["batchgate"]["vendor"] == provider
    assert len(client.batches.list(extra_body={"custom_llm_provider": "azure"}).data) == 2

    # Create, retrieve, list, cancel, then delete the input file. The line's call takes 5 s, so
    # the batch is still running when the cancel comes (a finished batch answers it with 409).
    slow = json_line("gpt-4o-2024-05-13", "/v1/chat/completions")
    slow["body"]["messages"][0]["content"] += " #sim:sleep=5000"
    path = write_jsonl(tmp_path / "cancel.jsonl", [slow])
    with open(path, "rb") as fp:
        f = client.files.create(file=fp, purpose="batch")
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert client.batches.retrieve(batch.id).input_file_id == f.id
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled")
    wait_for(
        lambda: client.batches.retrieve(batch.id).status in ("cancelled", "completed"),
        60,
        "the cancelled batch to end",
    )
    assert client.files.delete(f.id).deleted is True
