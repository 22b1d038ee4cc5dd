"""The secrets scanner itself: a key inside a Celery message is found (it is base64 there)."""

from __future__ import annotations

import json

import redis
from celery import Celery

from tests.secret_scan import append_only_files, contains, redis_values

SECRET = "sk-SCANME-0123456789abcdef"


def test_a_key_in_a_celery_message_body_is_found_in_the_broker_and_its_aof(
    clean_broker: str,
) -> None:
    app = Celery(broker=clean_broker)
    app.send_task("batchgate.run_chunk", args=["batch_x", SECRET, [1, 2]], queue="scan-test")
    r = redis.Redis.from_url(clean_broker)
    values = list(redis_values(r))
    assert any(contains(v, SECRET) for _, v in values)
    # Without the headers' argsrepr, the key is only in the base64 body: decoding finds it.
    (message,) = [json.loads(v) for k, v in values if k == b"scan-test" and v != k]
    message["headers"].pop("argsrepr")
    blob = json.dumps(message).encode()
    assert SECRET.encode() not in blob and contains(blob, SECRET)
    aofs = append_only_files(r)
    if aofs:  # the embedded Valkey keeps one; a shared server may not, or not readable here
        assert any(contains(p.read_bytes(), SECRET) for p in aofs)
    r.close()
