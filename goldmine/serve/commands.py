"""`goldmine keys ...`: create, list and revoke API keys, and read their usage.

Plain functions over ServeStore; the CLI parses the flags and draws the tables. `db` is the
database path (default: the registry, GOLDMINE_HOME/registry.db).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goldmine.serve.store import ServeStore


def keys_create(name: str, rpm: int | None = None, tokens_per_day: int | None = None,
                db: str | Path | None = None) -> dict[str, Any]:
    """A new key's row, with the key itself under "key": shown this once, never stored."""
    with ServeStore(db) as store:
        key, row = store.create_key(name, rpm=rpm, tokens_per_day=tokens_per_day)
    return {**row, "key": key}


def keys_list(db: str | Path | None = None, include_revoked: bool = False) -> list[dict[str, Any]]:
    with ServeStore(db) as store:
        return store.list_keys(include_revoked=include_revoked)


def keys_revoke(name: str, db: str | Path | None = None) -> dict[str, Any]:
    """Revoke a key by name or id; a running server refuses it from its next request on."""
    with ServeStore(db) as store:
        return store.revoke_key(name)


def keys_usage(key: str | None = None, days: int | None = None,
               db: str | Path | None = None) -> list[dict[str, Any]]:
    """Requests and tokens per UTC day, key and model, newest first."""
    with ServeStore(db) as store:
        return store.usage(key=key, days=days)
