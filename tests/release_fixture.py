"""The data dir release 0.1.0 wrote (before migrations), restored for upgrade tests. Made by
`tests/data/release-0.1.0/make_fixture.py`; what that release served is in `expected.json`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import REPO

FIXTURE = REPO / "tests" / "data" / "release-0.1.0"
SIM_URL_PLACEHOLDER = "http://simulator.invalid"


def restore(database_url: str, data_dir: Path) -> Path:
    """Load the release's database into `database_url` (a fresh one) and its files under
    `data_dir`; returns the fixture folder of that backend."""
    if database_url.startswith("sqlite"):
        src = FIXTURE / "sqlite"
        shutil.copy(src / "batchgate.db", database_url.split("///", 1)[1])
    else:
        src = FIXTURE / "postgresql"
        # pg_dump's psql meta-commands (\restrict) are for psql; the SQL runs as one script.
        dump = "\n".join(
            line
            for line in (src / "dump.sql").read_text().splitlines()
            if not line.startswith("\\")
        )
        with psycopg.connect(database_url, autocommit=True) as conn:
            psycopg.ClientCursor(conn).execute(dump)
    shutil.copytree(src / "files", data_dir / "files")
    return src


def expected(src: Path) -> dict[str, Any]:
    return json.loads((src / "expected.json").read_text())["batches"]
