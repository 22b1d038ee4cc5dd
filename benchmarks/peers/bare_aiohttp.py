"""The floor: one asyncio loop, one aiohttp session, `concurrency` coroutines pulling lines.

    python -m benchmarks.peers.bare_aiohttp --url http://127.0.0.1:8099 --input in.jsonl \
        --output out.jsonl --concurrency 64

No retries, no limits beyond the connection pool, no database: the least work a program can do
to call an OpenAI-compatible server for every line of a batch file and keep the answers. It
parses each response as JSON and writes one output line per request, as batchgate does.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from benchmarks.peers.common import now, parse_args, read_requests, summary


async def main() -> None:
    args = parse_args(__doc__ or "")
    url = args.url.rstrip("/") + "/v1/chat/completions"
    headers = {"Authorization": "Bearer sk-bench-key"}
    requests = read_requests(args.input)
    ok = failed = 0
    start = now()
    deadline = start + args.max_seconds if args.max_seconds else None
    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
    with open(args.output, "w") as out:
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal ok, failed
                for req in requests:  # a shared iterator: each line is taken once
                    if deadline is not None and now() > deadline:
                        return
                    try:
                        async with session.post(url, json=req["body"], headers=headers) as r:
                            body = await r.json()
                            status = r.status
                    except Exception as exc:
                        failed += 1
                        out.write(
                            json.dumps({"custom_id": req["custom_id"], "error": str(exc)}) + "\n"
                        )
                        continue
                    if status == 200:
                        ok += 1
                    else:
                        failed += 1
                    line = {
                        "custom_id": req["custom_id"],
                        "response": {"status_code": status, "body": body},
                    }
                    out.write(json.dumps(line) + "\n")

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    seconds = now() - start
    summary("bare aiohttp loop", ok + failed, ok, failed, seconds)


if __name__ == "__main__":
    asyncio.run(main())
