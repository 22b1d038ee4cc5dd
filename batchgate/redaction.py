"""Secret masking: one set of key-shaped patterns, and the logging filter built on it.

The same `mask_keys` cleans vendor error messages (`providers/_errors.sanitize`) and log records,
so a key shape masked in one place is masked in the other. The filter is installed on the root
logger's handlers by every batchgate process: by the `batchgate` CLI, and by Celery's logging
signals (`workers/celery.py`), so `celery -A workers worker` is filtered too.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchgate.config import Config

MASK = "***"

# Key-shaped substrings, masked wherever they appear. Order matters: the Anthropic form first, so
# its `sk-ant-` prefix is kept in the mask and the generic `sk-` pattern does not re-match it.
KEY_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"sk-ant-[A-Za-z0-9_\-*]{6,}"), "sk-ant-***"),
    (re.compile(r"\bsk-(?!ant-\*\*\*)[A-Za-z0-9_\-*.]{6,}"), "sk-***"),
    (re.compile(r"AIza[0-9A-Za-z_\-]{10,}"), "AIza***"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._\-~+/=]{6,}"), r"\1 ***"),
    # Keys passed as URL parameters (Gemini's `?key=`, Azure's `api-key=`).
    (re.compile(r"(?i)([?&](?:key|api[-_]?key|access_token)=)[^&\s\"']+"), r"\1***"),
)


def mask_keys(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets (exact) and every key-shaped substring masked."""
    # Exact secrets first: they may not look like any known key format.
    for secret in secrets:
        if len(secret) >= 6 and secret in text:
            text = text.replace(secret, MASK)
    for pattern, mask in KEY_PATTERNS:
        text = pattern.sub(mask, text)
    return text


def config_secrets(config: Config) -> list[str]:
    found: list[str] = []
    for dep in config.deployments:
        key = dep.api_key()
        if key:
            found.append(key)
    master = config.master_key()
    if master:
        found.append(master)
    for tenant in config.tenants:
        key = tenant.api_key()
        if key:
            found.append(key)
    return sorted({s for s in found if len(s) >= 6}, key=len, reverse=True)


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def redact(self, text: str) -> str:
        return mask_keys(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        clean = self.redact(message)
        if record.exc_info:
            clean += "\n" + self.redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, None
        return True


def install(config: Config | None = None, logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach the filter to every handler of `logger` (root by default) and to the logger.
    Installing again adds the config's secrets to the filters already there (no duplicates)."""
    secrets = config_secrets(config) if config else []
    target = logger or logging.getLogger()
    flt = next((f for f in target.filters if isinstance(f, RedactingFilter)), None)
    if flt is None:
        flt = RedactingFilter()
        target.addFilter(flt)
    flt.secrets = sorted({*flt.secrets, *secrets}, key=len, reverse=True)
    for handler in target.handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)
    return flt


__all__ = ["KEY_PATTERNS", "RedactingFilter", "config_secrets", "install", "mask_keys"]
