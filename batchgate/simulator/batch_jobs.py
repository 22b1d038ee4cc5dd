"""Vendor batch jobs of the simulator, in memory: input files, jobs, and their results.

A job is processed all at once when its `batch_delay_s` (of its first line's model) has passed,
the first time anyone looks at it: each line fails (a 500, `batch_fail_rate`), expires
(`batch_expire_rate`) or is answered as the online route would answer it. Which lines fail is
decided by a hash of the seed, model and prompt (not of job or custom ids, which differ on every
run), so the same lines with the same seed fail the same way. The wire modules
(`openai_batch_wire`, `anthropic_batch_wire`) only translate these jobs to each vendor's shape.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchgate.simulator.behaviour import Behaviour
from batchgate.simulator.content import Call, Reply, new_id

# One line's outcome: ("ok", Reply) | ("failed", Reply) | ("expired", None) | ("cancelled", None)
Outcome = tuple[str, Reply | None]
# Render a line's body as the online route would: (Call for the ledger, Reply).
Render = Callable[[dict[str, Any]], tuple[Call, Reply]]
FailReply = Callable[[Call], Reply]


@dataclass
class SimFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int


@dataclass
class SimJob:
    id: str
    vendor: str  # openai | azure | anthropic
    endpoint: str
    lines: list[tuple[str, dict[str, Any]]]  # (custom_id, body)
    created_at: float
    metadata: dict[str, str] | None = None
    input_file_id: str | None = None
    cancel_at: float | None = None
    ended_at: float | None = None
    status: str = "in_progress"  # in_progress | cancelling | ended (with `cancelled`)
    cancelled: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    published: bool = False  # its results are out (OpenAI: the output and error files)
    model: str = ""  # Gemini: the job's model comes from its URL, not from each line


class BatchJobs:
    def __init__(self) -> None:
        self.files: dict[str, SimFile] = {}
        self.jobs: dict[str, SimJob] = {}
        self.lines_seen = 0

    def clear(self) -> None:
        self.files.clear()
        self.jobs.clear()
        self.lines_seen = 0

    def add_file(self, filename: str, purpose: str, data: bytes) -> SimFile:
        f = SimFile("file-" + new_id(12), filename, purpose, data, int(time.time()))
        self.files[f.id] = f
        return f

    def add_job(
        self, vendor: str, prefix: str, endpoint: str, lines: list[Any], **kw: Any
    ) -> SimJob:
        # Gemini batch names are bare ids under `batches/`.
        job = SimJob(prefix + new_id(12).lower(), vendor, endpoint, lines, time.time(), **kw)
        self.jobs[job.id] = job
        self.lines_seen += len(lines)
        return job

    def advance(
        self, job: SimJob, behaviour: Behaviour, render: Render, fail: FailReply,
        record: Callable[[Call, int, str | None], None],
    ) -> None:  # fmt: skip
        """End the job if its time has come (or it was cancelled): compute every outcome."""
        if job.status == "ended":
            return
        model = job.model or (job.lines[0][1].get("model", "") if job.lines else "")
        mb = behaviour.for_model(str(model))
        now = time.time()
        cancelled = job.status == "cancelling"
        if not cancelled and now < job.created_at + mb.batch_delay_s:
            return
        for _custom_id, body in job.lines:
            if cancelled:
                job.outcomes.append(("cancelled", None))
                continue
            call, reply = render(body)
            draw = _draw(behaviour.seed, call.model, call.prompt)
            mb = behaviour.for_model(call.model)
            if draw < mb.batch_fail_rate:
                job.outcomes.append(("failed", fail(call)))
                record(call, 500, "server_error")
            elif draw < mb.batch_fail_rate + mb.batch_expire_rate:
                job.outcomes.append(("expired", None))
            else:
                job.outcomes.append(("ok", reply))
                record(call, reply.status, None)
        job.cancelled = cancelled
        job.status = "ended"
        job.ended_at = now


def _draw(seed: int, model: str, prompt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{model}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
