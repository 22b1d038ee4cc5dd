"""The Celery app: broker settings from batchgate, one queue per vendor, thin tasks."""

from __future__ import annotations

import logging

from celery.signals import worker_init

from batchgate.queueing import make_celery
from batchgate.settings import get_settings
from batchgate.store import migrate
from batchgate.store.db import make_engine

log = logging.getLogger(__name__)

app = make_celery(get_settings(), name="workers")
app.conf.include = ["workers.tasks"]


@worker_init.connect
def _schema_before_start(**_: object) -> None:
    """Migrate (or wait for whoever migrates) before the pool forks; refuse a database that a
    newer batchgate has migrated, however the worker was started (`celery -A workers worker`)."""
    engine = make_engine(get_settings().resolved_database_url())
    try:
        migrate.upgrade(engine)
    except migrate.SchemaTooNew as exc:
        log.critical("refusing to start: %s", exc)
        raise SystemExit(2) from None
    finally:
        engine.dispose()
