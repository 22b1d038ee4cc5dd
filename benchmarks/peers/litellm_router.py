"""LiteLLM's Router driven by one asyncio loop, `concurrency` calls at a time (a semaphore).

    python -m benchmarks.peers.litellm_router --url http://127.0.0.1:8099 --input in.jsonl \
        --output out.jsonl --concurrency 64

What a LiteLLM user writes to run a batch file without the proxy: one Router whose model_list
points at the simulator (OpenAI wire format), `await router.acompletion(...)` per line, with
the Router's own retries (num_retries=2, as batchgate's default). Pinned to litellm==1.109.1
(benchmarks/requirements.txt).
"""

from __future__ import annotations

import asyncio
import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import
os.environ.setdefault("LITELLM_LOG", "ERROR")

from benchmarks.peers.common import now, parse_args, read_requests, summary


async def main() -> None:
    args = parse_args(__doc__ or "")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    requests = list(read_requests(args.input))
    aliases = sorted({r["body"]["model"] for r in requests})
    router = litellm.Router(
        model_list=[
            {
                "model_name": alias,
                "litellm_params": {
                    "model": f"openai/{alias}",
                    "api_base": args.url.rstrip("/") + "/v1",
                    "api_key": "sk-bench-key",
                },
            }
            for alias in aliases
        ],
        num_retries=2,
    )
    sem = asyncio.Semaphore(args.concurrency)
    ok = failed = 0
    start = now()
    deadline = start + args.max_seconds if args.max_seconds else None

    with open(args.output, "w") as out:

        async def one(req: dict) -> None:
            nonlocal ok, failed
            async with sem:
                if deadline is not None and now() > deadline:
                    return
                body = dict(req["body"])
                model = body.pop("model")
                try:
                    resp = await router.acompletion(model=model, **body)
                except Exception as exc:
                    failed += 1
                    out.write(
                        json.dumps({"custom_id": req["custom_id"], "error": str(exc)[:200]}) + "\n"
                    )
                    return
                ok += 1
                line = {
                    "custom_id": req["custom_id"],
                    "response": {"status_code": 200, "body": resp.model_dump()},
                }
                out.write(json.dumps(line, default=str) + "\n")

        await asyncio.gather(*(one(r) for r in requests))
    seconds = now() - start
    from importlib.metadata import version

    summary(f"LiteLLM Router {version('litellm')}", ok + failed, ok, failed, seconds)


if __name__ == "__main__":
    asyncio.run(main())
