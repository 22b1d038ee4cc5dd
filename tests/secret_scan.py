"""Find a secret wherever the broker may hold it: every Redis value read by type (never
`DUMP`, whose LZF compression hides a plain string), base64 payloads decoded (a Celery message
carries its arguments as a base64 body), and the server's append-only files."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from pathlib import Path

import redis

_B64 = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")


def expand(blob: bytes) -> Iterator[bytes]:
    """The blob, then every base64 run inside it decoded (one level is what Celery adds)."""
    yield blob
    for run in _B64.findall(blob):
        try:
            yield base64.b64decode(run + b"=" * (-len(run) % 4))
        except (binascii.Error, ValueError):
            continue


def contains(blob: bytes, secret: str) -> bool:
    raw = secret.encode()
    return any(raw in part for part in expand(blob))


def redis_values(r: redis.Redis) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for every key and every member of every list, hash, set and sorted set."""
    for key in r.scan_iter("*"):
        yield key, key
        kind = r.type(key)
        if kind == b"string":
            yield key, r.get(key) or b""
        elif kind == b"list":
            for v in r.lrange(key, 0, -1):
                yield key, v
        elif kind == b"hash":
            for k, v in r.hgetall(key).items():
                yield key, k + b"\n" + v
        elif kind == b"set":
            for v in r.smembers(key):
                yield key, v
        elif kind == b"zset":
            for v in r.zrange(key, 0, -1):
                yield key, v
        elif kind == b"stream":
            for _, fields in r.xrange(key):
                for k, v in fields.items():
                    yield key, k + b"\n" + v


def append_only_files(r: redis.Redis) -> list[Path]:
    """The server's AOF files when it keeps them where this process can read them."""
    conf = r.config_get("*")
    if conf.get("appendonly") != "yes":
        return []
    base = Path(conf.get("dir", "."))
    folder = base / conf.get("appenddirname", "appendonlydir")
    paths = [*folder.glob("*.aof*"), *base.glob("*.aof")]
    return [p for p in paths if p.is_file()]
