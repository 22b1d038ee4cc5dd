"""A server process started while its database is briefly unreachable waits for it, then says
why it gives up, instead of dying at the first refused connection."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from sqlalchemy.exc import OperationalError

from batchgate.cli import db_cmds
from batchgate.settings import Settings


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(data_dir=tmp_path, database_url=url)


def test_an_unreachable_database_is_tried_again_then_refused_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(db_cmds, "RETRY_S", 0.01)
    # Nothing listens on port 1.
    settings = _settings(tmp_path, "postgresql://root:s3cret@127.0.0.1:1/test")
    with pytest.raises(typer.Exit) as exit_:
        db_cmds.migrate_or_exit(settings, wait_s=0.2)
    assert exit_.value.exit_code == 1
    err = capsys.readouterr().err
    assert "waiting for the database" in err
    assert "refusing to start: the database is unreachable" in err
    assert "s3cret" not in err


def test_a_database_that_comes_back_is_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_cmds, "RETRY_S", 0.0)
    calls: list[int] = []
    real = db_cmds.migrate.upgrade

    def flaky(engine):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) < 3:  # the first two connections are closed on us, as by a relay
            raise OperationalError("connect", {}, Exception("server closed the connection"))
        return real(engine)

    monkeypatch.setattr(db_cmds.migrate, "upgrade", flaky)
    db_cmds.migrate_or_exit(_settings(tmp_path, f"sqlite:///{tmp_path}/bg.db"), wait_s=30)
    assert len(calls) == 3
    assert (tmp_path / "bg.db").exists()
