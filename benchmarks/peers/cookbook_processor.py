"""The OpenAI cookbook's `api_request_parallel_processor.py` approach, re-implemented from its
published description, pointed at the simulator.

    python -m benchmarks.peers.cookbook_processor --url http://127.0.0.1:8099 --input in.jsonl \
        --output out.jsonl --concurrency 64

As published: one asyncio loop that reads requests one at a time (retries first), refills a
requests-per-minute and a tokens-per-minute budget continuously, dispatches a request as an
asyncio task when both budgets cover it (tokens counted with tiktoken cl100k_base: message
tokens + max_tokens), sleeps 1 ms per loop turn, and after any rate-limit error pauses all
dispatching until 15 s have passed since the last one. Each call opens its own
`aiohttp.ClientSession`; an error reply (any JSON with an "error" key) is retried up to
`max_attempts` (5) times by putting the request back on the retry queue; each result is
appended to the output file (opened per line).

One change so that it runs at the same concurrency as the others: the budgets are set far
above what the simulator can serve (so they never bind) and at most `--concurrency` requests
are in flight at once. Without that cap the loop would start every request of the file within
seconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks.peers.common import now, parse_args, read_requests, summary

SECONDS_TO_PAUSE_AFTER_RATE_LIMIT_ERROR = 15
SECONDS_TO_SLEEP_EACH_LOOP = 0.001
MAX_ATTEMPTS = 5
MAX_REQUESTS_PER_MINUTE = 10_000_000
MAX_TOKENS_PER_MINUTE = 10_000_000_000


def _encoding() -> Any:
    """tiktoken's cl100k_base, from the files LiteLLM bundles (no network here); None if absent."""
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.origin:
        bundled = os.path.join(os.path.dirname(spec.origin), "litellm_core_utils", "tokenizers")
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", bundled)
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base")
    except Exception:
        return None


ENCODING = _encoding()


def num_tokens_consumed(body: dict[str, Any]) -> int:
    """As the cookbook counts a chat completion: per message 4 + tokens of each value, + 2,
    plus n × max_tokens (completion tokens are budgeted up front)."""
    completion = body.get("n", 1) * body.get("max_tokens", 15)
    num = 0
    for message in body.get("messages", []):
        num += 4
        for key, value in message.items():
            text = str(value)
            num += len(ENCODING.encode(text)) if ENCODING else max(1, len(text) // 4)
            if key == "name":
                num -= 1
    return num + 2 + completion


@dataclass
class StatusTracker:
    num_tasks_started: int = 0
    num_tasks_in_progress: int = 0
    num_tasks_succeeded: int = 0
    num_tasks_failed: int = 0
    num_rate_limit_errors: int = 0
    num_api_errors: int = 0
    num_other_errors: int = 0
    time_of_last_rate_limit_error: float = 0.0
    in_flight: int = 0  # the one addition: calls on the wire now


@dataclass
class APIRequest:
    task_id: int
    request_json: dict[str, Any]
    token_consumption: int
    attempts_left: int
    metadata: dict[str, Any] | None
    result: list[Any] = field(default_factory=list)

    async def call_api(
        self,
        request_url: str,
        request_header: dict[str, str],
        retry_queue: asyncio.Queue,
        save_filepath: str,
        status_tracker: StatusTracker,
    ) -> None:
        error: Any = None
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    url=request_url, headers=request_header, json=self.request_json["body"]
                ) as r,
            ):
                response = await r.json()
            if "error" in response:
                status_tracker.num_api_errors += 1
                error = response
                if "rate limit" in response["error"].get("message", "").lower():
                    status_tracker.time_of_last_rate_limit_error = time.time()
                    status_tracker.num_rate_limit_errors += 1
                    status_tracker.num_api_errors -= 1
        except Exception as exc:
            status_tracker.num_other_errors += 1
            error = exc
        finally:
            status_tracker.in_flight -= 1
        if error:
            self.result.append(error)
            if self.attempts_left:
                retry_queue.put_nowait(self)
            else:
                append_to_jsonl(
                    {
                        "custom_id": self.request_json["custom_id"],
                        "error": [str(e) for e in self.result],
                    },
                    save_filepath,
                )
                status_tracker.num_tasks_in_progress -= 1
                status_tracker.num_tasks_failed += 1
        else:
            append_to_jsonl(
                {
                    "custom_id": self.request_json["custom_id"],
                    "response": {"status_code": 200, "body": response},
                },
                save_filepath,
            )
            status_tracker.num_tasks_in_progress -= 1
            status_tracker.num_tasks_succeeded += 1


def append_to_jsonl(data: Any, filename: str) -> None:
    with open(filename, "a") as f:
        f.write(json.dumps(data) + "\n")


async def process_api_requests_from_file(
    requests_filepath: str,
    save_filepath: str,
    request_url: str,
    api_key: str,
    max_requests_per_minute: float,
    max_tokens_per_minute: float,
    max_attempts: int,
    max_in_flight: int,
    max_seconds: float,
) -> StatusTracker:
    request_header = {"Authorization": f"Bearer {api_key}"}
    queue_of_requests_to_retry: asyncio.Queue = asyncio.Queue()
    task_id = 0
    status_tracker = StatusTracker()
    next_request: APIRequest | None = None
    available_request_capacity = max_requests_per_minute
    available_token_capacity = max_tokens_per_minute
    last_update_time = time.time()
    file_not_finished = True
    requests = read_requests(requests_filepath)
    started = time.time()
    tasks: set[asyncio.Task[None]] = set()

    while True:
        if next_request is None:
            if not queue_of_requests_to_retry.empty():
                next_request = queue_of_requests_to_retry.get_nowait()
            elif file_not_finished and not (max_seconds and time.time() - started > max_seconds):
                try:
                    request_json = next(requests)
                    next_request = APIRequest(
                        task_id=task_id,
                        request_json=request_json,
                        token_consumption=num_tokens_consumed(request_json["body"]),
                        attempts_left=max_attempts,
                        metadata=None,
                    )
                    task_id += 1
                    status_tracker.num_tasks_started += 1
                    status_tracker.num_tasks_in_progress += 1
                except StopIteration:
                    file_not_finished = False

        current_time = time.time()
        seconds_since_update = current_time - last_update_time
        available_request_capacity = min(
            available_request_capacity + max_requests_per_minute * seconds_since_update / 60.0,
            max_requests_per_minute,
        )
        available_token_capacity = min(
            available_token_capacity + max_tokens_per_minute * seconds_since_update / 60.0,
            max_tokens_per_minute,
        )
        last_update_time = current_time

        if (
            next_request is not None
            and status_tracker.in_flight < max_in_flight
            and available_request_capacity >= 1
            and available_token_capacity >= next_request.token_consumption
        ):
            available_request_capacity -= 1
            available_token_capacity -= next_request.token_consumption
            next_request.attempts_left -= 1
            status_tracker.in_flight += 1  # released by call_api when the reply is in
            task = asyncio.create_task(
                next_request.call_api(
                    request_url,
                    request_header,
                    queue_of_requests_to_retry,
                    save_filepath,
                    status_tracker,
                )
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_request = None

        if status_tracker.num_tasks_in_progress == 0 and not file_not_finished:
            break
        if max_seconds and time.time() - started > max_seconds + 20:
            break  # a capped run: give up on stragglers still pausing

        await asyncio.sleep(SECONDS_TO_SLEEP_EACH_LOOP)

        seconds_since_rate_limit_error = time.time() - status_tracker.time_of_last_rate_limit_error
        if seconds_since_rate_limit_error < SECONDS_TO_PAUSE_AFTER_RATE_LIMIT_ERROR:
            await asyncio.sleep(
                SECONDS_TO_PAUSE_AFTER_RATE_LIMIT_ERROR - seconds_since_rate_limit_error
            )
    return status_tracker


async def main() -> None:
    args = parse_args(__doc__ or "")
    open(args.output, "w").close()
    start = now()
    st = await process_api_requests_from_file(
        args.input,
        args.output,
        args.url.rstrip("/") + "/v1/chat/completions",
        "sk-bench-key",
        MAX_REQUESTS_PER_MINUTE,
        MAX_TOKENS_PER_MINUTE,
        MAX_ATTEMPTS,
        args.concurrency,
        args.max_seconds,
    )
    seconds = now() - start
    summary(
        "OpenAI cookbook processor",
        st.num_tasks_succeeded + st.num_tasks_failed,
        st.num_tasks_succeeded,
        st.num_tasks_failed,
        seconds,
        rate_limit_errors=st.num_rate_limit_errors,
        api_errors=st.num_api_errors,
        other_errors=st.num_other_errors,
        tokens_counted_with="tiktoken" if ENCODING else "len/4",
    )


if __name__ == "__main__":
    asyncio.run(main())
