"""What a user would run instead of batchgate, each as a standalone script that reads an OpenAI
batch JSONL file, calls the simulator at a fixed concurrency and writes one result line per
request; each prints one JSON summary line (lines, ok, failed, seconds, lines_per_s) at the end.

- `bare_aiohttp.py`      — the floor: one asyncio loop, one aiohttp session, N coroutines.
- `litellm_router.py`    — LiteLLM's Router driven by an asyncio loop with a semaphore.
- `cookbook_processor.py` — the OpenAI cookbook's api_request_parallel_processor approach.
"""
