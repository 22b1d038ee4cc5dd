"""Optional py-spy sampling of batchgate's processes while a batch runs (`run.py --profile DIR`).

Each process is recorded in py-spy's raw (collapsed stacks) format; `summarise` prints the
functions with the most self time and the batchgate/workers functions with the most inclusive
time, so a reader sees what dominates without opening a flame graph.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
from pathlib import Path


class Profiler:
    def __init__(self, outdir: Path, label: str, rate: int = 67) -> None:
        self.outdir = outdir
        self.label = label
        self.rate = rate
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, targets: list[tuple[str, int]]) -> None:
        exe = shutil.which("py-spy")
        if exe is None:
            print("  (py-spy not found: no profile)")
            return
        self.outdir.mkdir(parents=True, exist_ok=True)
        for role, pid in targets:
            out = self.outdir / f"{self.label}-{role}-{pid}.txt"
            proc = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.procs.append((proc, out))

    def stop(self) -> list[Path]:
        done = []
        for proc, out in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if out.exists():
                done.append(out)
        self.procs = []
        return done


def _frames(stack: str) -> list[str]:
    # raw format: "thread (tid);func (file:line);func (file:line) count"
    return [f for f in stack.split(";")[1:] if f]


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def summarise(path: Path, top: int = 12) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in _frames(stack)]
        if not frames:
            continue
        self_time[frames[-1]] += n
        for f in set(frames):
            if "batchgate/" in f or "workers/" in f:
                inclusive[f] += n
    if not total:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {total} samples"]
    lines.append("  self time:")
    for f, n in self_time.most_common(top):
        lines.append(f"    {100 * n / total:5.1f}%  {f}")
    lines.append("  inclusive (batchgate code):")
    for f, n in inclusive.most_common(top):
        lines.append(f"    {100 * n / total:5.1f}%  {f}")
    return "\n".join(lines)
