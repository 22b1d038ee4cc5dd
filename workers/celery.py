"""The Celery app: broker settings from batchgate, one queue per vendor, thin tasks."""

from __future__ import annotations

from batchgate.queueing import make_celery
from batchgate.settings import get_settings

app = make_celery(get_settings(), name="workers")
app.conf.include = ["workers.tasks"]
