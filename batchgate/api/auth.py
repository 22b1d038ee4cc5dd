"""Bearer keys → tenant. Keys are kept as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine

from batchgate.api.errors import APIError, lookup_key, not_found
from batchgate.config import MASTER_TENANT, Config, resolve_secret, unset_variable
from batchgate.errors import ConfigError

ADMIN = MASTER_TENANT


@dataclass(frozen=True)
class Caller:
    tenant: str
    admin: bool
    max_cost_usd: Decimal | None = None  # the tenant's ceiling per batch


class KeyRing:
    """Every configured key. A key that names an unset environment variable refuses to build
    (the API would otherwise serve with that key missing, or with no auth at all)."""

    def __init__(self, config: Config) -> None:
        self._keys: list[tuple[bytes, Caller]] = []
        refs = [("general_settings.master_key", config.master_key_ref, Caller(ADMIN, True))]
        for i, t in enumerate(config.tenants):
            caller = Caller(t.name, admin=False, max_cost_usd=t.max_cost_usd)
            refs.append((f"batchgate_settings.tenants.{i}.api_key", t.api_key_ref, caller))
        for where, ref, caller in refs:
            if ref is None:
                continue
            if (name := unset_variable(ref)) is not None:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            digest = _digest(_resolved(ref))
            if any(hmac.compare_digest(d, digest) for d, _ in self._keys):
                raise ConfigError(f"{where}: the same key is given to another tenant or admin")
            self._keys.append((digest, caller))

    @property
    def open(self) -> bool:
        """No key configured: a local, single-tenant setup (refused on non-loopback binds)."""
        return not self._keys

    def caller(self, key: str | None) -> Caller | None:
        if self.open:
            return Caller(ADMIN, admin=True)
        if not key:
            return None
        digest = _digest(key)
        found = None
        for known, caller in self._keys:  # no early exit: same time whichever key matches
            if hmac.compare_digest(known, digest):
                found = caller
        return found


def _resolved(ref: str) -> str:
    key = resolve_secret(ref)
    if not key:
        raise ConfigError("an API key in the config is empty")
    return key


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


# Declared so the OpenAPI schema documents the bearer key; the check itself is ours (a 401 in
# OpenAI's error shape), hence auto_error=False.
bearer = HTTPBearer(auto_error=False, description="An API key from the config.")


def current_caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    ring: KeyRing = request.app.state.keys
    key = credentials.credentials.strip() if credentials else None
    caller = ring.caller(key)
    if caller is None:
        raise APIError(
            401,
            "Incorrect or missing API key.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


Lookup = Callable[[Engine, str, str], Any]  # (engine, tenant, id) → row or None: `store/owned.py`


def owned_row(request: Request, lookup: Lookup, what: str, ident: str, caller: Caller) -> Any:
    """The caller's own row by id, found by a `store.owned` lookup; another tenant's row is a
    404, like a missing one (no existence oracle)."""
    lookup_key(what, ident)
    row = lookup(request.app.state.engine, caller.tenant, ident)
    if row is None:
        raise not_found(what, ident)
    return row
