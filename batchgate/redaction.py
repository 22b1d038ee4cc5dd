"""A logging filter that masks secrets: every key the config resolves, and key-shaped strings.

Installed on the root logger's handlers by every batchgate process (API, workers, reconciler,
Flower), so a key that reaches a log record by accident — an exception text, a vendor error body,
a debug line of a library — is masked before it is written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from batchgate.config import Config

MASK = "***"
# Provider-key shapes, masked wherever they appear in a record.
_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,})")


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
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _PATTERN.sub(MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        clean = self.redact(message)
        if record.exc_info:
            import traceback

            clean += "\n" + self.redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, None
        return True


def install(config: Config | None = None, logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach the filter to every handler of `logger` (root by default) and to the logger."""
    flt = RedactingFilter(config_secrets(config) if config else ())
    target = logger or logging.getLogger()
    target.addFilter(flt)
    for handler in target.handlers:
        handler.addFilter(flt)
    return flt


__all__ = ["RedactingFilter", "config_secrets", "install"]
