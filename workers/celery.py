"""The Celery app: broker settings from batchgate, one queue per vendor, thin tasks."""

from __future__ import annotations

import logging

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
)

from batchgate import redaction
from batchgate.config import load_config
from batchgate.errors import ConfigError
from batchgate.memory import quiet_collector, return_big_blocks
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


@worker_process_init.connect
def _tune_memory(**_: object) -> None:
    """In each pool process, where the calls run and a batch's last chunk finalizes it (blocks of
    output lines, fetched pages): big blocks are unmapped when freed, and the collector's pauses
    are rare and short (`batchgate.memory`)."""
    return_big_blocks()
    quiet_collector()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger, **_: object) -> None:
    """Mask keys in every record, however the worker was started: Celery sets up its handlers
    itself under `celery -A workers worker`, so the `batchgate` CLI's filter would not be there."""
    path = get_settings().config
    try:
        config = load_config(path) if path is not None else None
    except ConfigError:
        config = None  # key shapes are still masked; the runtime reports the bad config
    redaction.install(config, logger)
