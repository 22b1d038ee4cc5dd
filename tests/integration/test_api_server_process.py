"""The process that serves the API holds only what serving needs (issue 19: the API's RSS):
`batchgate serve` checks and migrates, then execs `batchgate.api.server` in the same pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from batchgate.broker import free_port
from tests.integration.test_cli_servers import CONFIG

HEAVY = ("alembic", "typer", "rich", "batchgate.cli", "batchgate.store.migrate")


def test_the_server_module_and_an_unmigrating_app_import_neither_cli_nor_alembic(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import batchgate.api.server\n"
        "from batchgate.api.app import create_app\n"
        "from batchgate.config import load_config\n"
        "from batchgate.settings import Settings\n"
        f"settings = Settings(data_dir=Path({str(tmp_path)!r}), redis_url='redis://127.0.0.1:9')\n"
        f"create_app(settings, load_config(Path({str(config)!r})), migrate_schema=False)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_serve_execs_the_lean_server_with_the_settings_of_its_flags(
    tmp_path: Path, broker_url: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    data = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    env["BATCHGATE_REDIS_URL"] = broker_url
    argv = ["serve", "--config", str(config), "--data-dir", str(data), "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchgate", *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 90
            while True:  # polls until the server listens (or the deadline), no fixed wait
                assert proc.poll() is None, "serve exited"
                try:
                    models = http.get("/v1/models")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the API never answered"
                    time.sleep(0.2)
            assert models.status_code == 200
            assert [m["id"] for m in models.json()["data"]] == ["m"]
            # The same pid, now the server module (not the CLI that checked and migrated).
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            assert cmdline[1:3] == [b"-m", b"batchgate.api.server"]
            # --data-dir reached it: the upload lands in that data dir's database and files.
            up = http.post(
                "/v1/files",
                files={"file": ("b.jsonl", b'{"x": 1}\n')},
                data={"purpose": "batch"},
            )
            assert up.status_code == 200, up.text
            assert len(list((data / "files").rglob("*"))) >= 1
            assert http.get(f"/v1/files/{up.json()['id']}").status_code == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


# Whether a 1 MiB block gets a mapping of its own after an 8 MiB one was freed (glibc's
# mallinfo2 counts the mapped blocks).
MAPPED_AFTER_A_BIG_FREE = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "worker":
    from celery.signals import worker_process_init
    import workers.celery
    worker_process_init.send(sender=None)
elif sys.argv[1] == "server":
    from batchgate.memory import return_big_blocks
    return_big_blocks()
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblks - before)
"""


def test_the_server_gives_big_blocks_their_own_mapping_even_after_a_bigger_free() -> None:
    def mapped(mode: str) -> str:
        argv = [sys.executable, "-c", MAPPED_AFTER_A_BIG_FREE, mode]
        # The workers' app reads its settings at import; nothing is contacted.
        env = {**os.environ, "BATCHGATE_REDIS_URL": "redis://127.0.0.1:1/0"}
        return subprocess.run(
            argv, capture_output=True, text=True, check=True, env=env
        ).stdout.strip()

    # glibc's default: the freed 8 MiB block raised the threshold, the 1 MiB one is in the heap.
    assert mapped("default") == "0"
    assert mapped("server") == "1"
    assert mapped("worker") == "1"  # each worker pool process, as Celery starts it
