"""`batchgate.simulator.run` in a real process: announces itself, serves, stops on a signal."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "simulator.yaml"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_run_prints_its_address_serves_the_config_and_exits_cleanly(stop_signal):
    code = f"from batchgate.simulator import run; run(port=0, behaviour_path={str(SAMPLE)!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        url = match.group(1) + "/v1/chat/completions"
        good = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-simulated"})
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer other"})
        assert good.json()["choices"][0]["message"]["content"] == "echo: hi"
        assert wrong.status_code == 401  # the sample config requires its key
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # nothing logged per request
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
