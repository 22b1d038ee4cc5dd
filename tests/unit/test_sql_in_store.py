"""Every query lives in `batchgate/store/` (issue 19: a schema change touches store/ only).

Outside it, SQLAlchemy may appear only as types (`sqlalchemy.engine`) and the errors a caller
classifies (`sqlalchemy.exc`): no statement builders, no table columns."""

from __future__ import annotations

import ast
from pathlib import Path

import batchgate

PACKAGE = Path(batchgate.__file__).parent
ALLOWED = {"sqlalchemy.engine", "sqlalchemy.exc"}


def _outside_store() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "store" not in p.relative_to(PACKAGE).parts]


def test_no_module_outside_store_builds_sql() -> None:
    found = []
    for path in _outside_store():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in ("sqlalchemy", "sqlmodel", "alembic") and name not in ALLOWED:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("__table__", "c")
                and isinstance(node.value, ast.Name)
                and node.value.id.isupper()
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} reads table columns")
    assert found == []


def test_the_scan_sees_the_package() -> None:
    paths = {p.relative_to(PACKAGE).as_posix() for p in _outside_store()}
    assert {"pipeline/ingest.py", "api/batches.py", "execution/runner.py"} <= paths
    assert not any(p.startswith("store/") for p in paths)
