"""What `goldmine serve` remembers: API keys, their limits, usage, responses and feedback.

Everything lives in SQLite, by default beside the runs in the registry database
(GOLDMINE_HOME/registry.db), in tables of its own:

  api_keys   id, name, prefix, sha256 of the key, rpm, tokens_per_day, created, revoked.
             The key itself ("gm-" + 43 random characters) is shown once, when it is made,
             and never stored; `prefix` (its first 8 characters after "gm-") is for display.
  usage      one row per (UTC day, key, model): requests, prompt and completion tokens.
  responses  what the server answered (the request's messages and the answer), by response id.
  feedback   at most one rating (-1, 0 or 1) and optional correction per response; the feedback
             loop turns them into a chat dataset (goldmine/data/feedback.py).

Limits: `rpm` is a sliding 60-second window kept in memory (per server process);
`tokens_per_day` counts prompt + completion tokens of the current UTC day from the usage table,
cached in memory and kept current by `record_usage`, so `check_limits` costs no query.

One connection, shared by the server's handler threads and its engine thread under a lock;
WAL mode so that `goldmine keys ...` in another process can read and write meanwhile.
Times are UNIX seconds; days are 'YYYY-MM-DD' in UTC. The clock is injectable for tests.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from goldmine.errors import GoldmineError

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    hash            TEXT NOT NULL UNIQUE,
    rpm             INTEGER,
    tokens_per_day  INTEGER,
    created         REAL NOT NULL,
    revoked         REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name) WHERE revoked IS NULL;
CREATE TABLE IF NOT EXISTS usage (
    day                TEXT NOT NULL,
    key_id             TEXT NOT NULL,
    key_name           TEXT NOT NULL,
    model              TEXT NOT NULL,
    requests           INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_id, model)
);
CREATE TABLE IF NOT EXISTS responses (
    id        TEXT PRIMARY KEY,
    model     TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    messages  TEXT NOT NULL,
    answer    TEXT NOT NULL,
    created   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id           TEXT PRIMARY KEY,
    response_id  TEXT NOT NULL UNIQUE REFERENCES responses (id),
    rating       INTEGER NOT NULL,
    correction   TEXT,
    created      REAL NOT NULL
);
"""
KEY_PREFIX = "gm-"
NO_AUTH = ("", "(no auth)")  # key id and name that usage without a key is recorded under
WINDOW_S = 60.0
KEY_COLUMNS = "id, name, prefix, rpm, tokens_per_day, created, revoked"


class RateLimited(GoldmineError):
    """A request over its key's rpm or daily token quota; the server answers 429."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class UnknownResponse(GoldmineError):
    """Feedback for a response id the server never gave out (or has forgotten)."""


def hash_key(key: str) -> str:
    """What is stored of an API key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def utc_day(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d")


def seconds_to_midnight(t: float) -> int:
    """Whole seconds (at least 1) from `t` to the next UTC midnight."""
    now = datetime.fromtimestamp(t, timezone.utc)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil(midnight.timestamp() - t))


def _positive(value: int | None, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GoldmineError(f"{field}: expected a whole number >= 1, got {value!r}")
    return value


class ServeStore:
    def __init__(self, path: str | Path | None = None, clock: Callable[[], float] = time.time):
        from goldmine.registry import home

        self.path = Path(path) if path else home() / "registry.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._lock = threading.Lock()
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise GoldmineError(f"{self.path}: not a goldmine registry database ({e})") from None
        self.db.row_factory = sqlite3.Row
        self._recent: dict[str, deque[float]] = {}  # key id -> request times in the rpm window
        self._today: dict[tuple[str, str], int] = {}  # (day, key id) -> tokens used that day

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> ServeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, args: tuple | list = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    # -- keys -------------------------------------------------------------------------------
    def create_key(self, name: str, rpm: int | None = None,
                   tokens_per_day: int | None = None) -> tuple[str, dict[str, Any]]:
        """A new key: (the key itself, to be shown once; its row)."""
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            raise GoldmineError("name: a key needs a non-empty name")
        rpm, tokens_per_day = _positive(rpm, "rpm"), _positive(tokens_per_day, "tokens_per_day")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = {"id": "key-" + secrets.token_hex(4), "name": name,
               "prefix": key[len(KEY_PREFIX):len(KEY_PREFIX) + 8], "rpm": rpm,
               "tokens_per_day": tokens_per_day, "created": self.clock(), "revoked": None}
        try:
            with self._lock:
                self.db.execute(
                    "INSERT INTO api_keys (id, name, prefix, hash, rpm, tokens_per_day, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (row["id"], name, row["prefix"], hash_key(key), rpm, tokens_per_day,
                     row["created"]))
        except sqlite3.IntegrityError:
            raise GoldmineError(f"an active key named {name!r} exists already; revoke it "
                                "(`goldmine keys revoke`) or choose another name") from None
        return key, row

    def list_keys(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        """Keys, oldest first; `revoked` is the time a key was revoked, or None."""
        where = "" if include_revoked else " WHERE revoked IS NULL"
        return self._query(f"SELECT {KEY_COLUMNS} FROM api_keys{where} ORDER BY created, id")

    def revoke_key(self, name_or_id: str) -> dict[str, Any]:
        """Revoke the active key with this name, or the key with this id; its row, revoked."""
        with self._lock:
            found = self.db.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ? OR name = ? "
                "ORDER BY revoked IS NOT NULL, created DESC", (name_or_id, name_or_id)).fetchone()
            if found is None:
                raise GoldmineError(f"no API key named {name_or_id!r} (see `goldmine keys list`)")
            row = dict(found)
            if row["revoked"] is not None:
                raise GoldmineError(f"key {name_or_id!r} ({row['id']}) is already revoked")
            row["revoked"] = self.clock()
            self.db.execute("UPDATE api_keys SET revoked = ? WHERE id = ?",
                            (row["revoked"], row["id"]))
        return row

    def authenticate(self, key: str | None) -> dict[str, Any] | None:
        """The active key's row, or None for a missing, unknown or revoked key."""
        if not key:
            return None
        rows = self._query(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ? AND revoked IS NULL",
                           (hash_key(key),))
        return rows[0] if rows else None

    # -- limits and usage -------------------------------------------------------------------
    def _tokens_on(self, day: str, key_id: str) -> int:
        """Tokens used by a key on a day (cached; call with the lock held)."""
        if (day, key_id) not in self._today:
            for k in [k for k in self._today if k[0] != day]:
                del self._today[k]  # yesterday's totals are of no more use
            total = self.db.execute(
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage "
                "WHERE day = ? AND key_id = ?", (day, key_id)).fetchone()[0]
            self._today[(day, key_id)] = int(total)
        return self._today[(day, key_id)]

    def check_limits(self, key: dict[str, Any]) -> None:
        """Raise RateLimited if this request is over the key's daily tokens or rpm; otherwise
        count it in the rpm window."""
        now = self.clock()
        with self._lock:
            quota = key.get("tokens_per_day")
            if quota is not None:
                used = self._tokens_on(utc_day(now), key["id"])
                if used >= quota:
                    raise RateLimited(f"key {key['name']!r} has used its {quota:,} tokens for "
                                      f"today (UTC); the quota resets at midnight UTC",
                                      seconds_to_midnight(now))
            rpm = key.get("rpm")
            if rpm is not None:
                recent = self._recent.setdefault(key["id"], deque())
                while recent and recent[0] <= now - WINDOW_S:
                    recent.popleft()
                if len(recent) >= rpm:
                    wait = max(1, math.ceil(recent[0] + WINDOW_S - now))
                    raise RateLimited(f"key {key['name']!r} is limited to {rpm} requests per "
                                      f"minute; retry in {wait} s", wait)
                recent.append(now)

    def record_usage(self, key: dict[str, Any] | None, model: str, prompt_tokens: int,
                     completion_tokens: int) -> None:
        """Add one request and its tokens to today's row for (key, model)."""
        key_id, key_name = (key["id"], key["name"]) if key else NO_AUTH
        day = utc_day(self.clock())
        with self._lock:
            self.db.execute(
                "INSERT INTO usage (day, key_id, key_name, model, requests, prompt_tokens, "
                "completion_tokens) VALUES (?, ?, ?, ?, 1, ?, ?) "
                "ON CONFLICT (day, key_id, model) DO UPDATE SET requests = requests + 1, "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens",
                (day, key_id, key_name, model, int(prompt_tokens), int(completion_tokens)))
            if (day, key_id) in self._today:
                self._today[(day, key_id)] += int(prompt_tokens) + int(completion_tokens)

    def usage(self, key: str | None = None, days: int | None = None) -> list[dict[str, Any]]:
        """Usage rows, newest day first: day, key (its name), model, requests, prompt_tokens,
        completion_tokens, total_tokens. `key`: a key's name or id; `days`: the last N UTC days
        (today included)."""
        where, args = [], []
        if key is not None:
            where.append("(key_name = ? OR key_id = ?)")
            args += [key, key]
        if days is not None:
            days = _positive(days, "days")
            first = datetime.fromtimestamp(self.clock(), timezone.utc) - timedelta(days=days - 1)
            where.append("day >= ?")
            args.append(first.strftime("%Y-%m-%d"))
        rows = self._query(
            "SELECT day, key_name AS key, model, requests, prompt_tokens, completion_tokens, "
            "prompt_tokens + completion_tokens AS total_tokens FROM usage"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY day DESC, key_name, model", args)
        if not rows and key is not None and key != NO_AUTH[1] and not self._query(
                "SELECT 1 FROM api_keys WHERE name = ? OR id = ?", (key, key)):
            raise GoldmineError(f"no API key named {key!r} (see `goldmine keys list`)")
        return rows

    # -- responses and feedback -------------------------------------------------------------
    def save_response(self, response_id: str, model: str, key: dict[str, Any] | None,
                      messages: list[dict[str, Any]], answer: str) -> None:
        """Keep what was asked and answered, so that feedback on it can become training data."""
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO responses (id, model, key_id, messages, answer, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (response_id, model, key["id"] if key else NO_AUTH[0],
                 json.dumps(messages, ensure_ascii=False), answer, self.clock()))

    def add_feedback(self, response_id: str, rating: int,
                     correction: str | None = None) -> dict[str, Any]:
        """Rate a response (-1 bad, 0 neutral, 1 good), optionally with the answer that was
        wanted. A second rating of the same response replaces the first."""
        if isinstance(rating, bool) or rating not in (-1, 0, 1):
            raise GoldmineError(f"rating: expected -1, 0 or 1, got {rating!r}")
        if correction is not None and not isinstance(correction, str):
            raise GoldmineError(f"correction: expected text, got {type(correction).__name__}")
        correction = correction if correction and correction.strip() else None
        row = {"id": "fb-" + secrets.token_hex(8), "response_id": response_id, "rating": rating,
               "correction": correction}
        with self._lock:
            if self.db.execute("SELECT 1 FROM responses WHERE id = ?",
                               (response_id,)).fetchone() is None:
                raise UnknownResponse(f"response_id: no response {response_id!r} is known to "
                                      "this server")
            self.db.execute(
                "INSERT OR REPLACE INTO feedback (id, response_id, rating, correction, created) "
                "VALUES (?, ?, ?, ?, ?)", (row["id"], response_id, rating, correction,
                                           self.clock()))
        return row

    def feedback(self, min_rating: int | None = None,
                 model: str | None = None) -> list[dict[str, Any]]:
        """Rated responses, oldest feedback first: response_id, model, messages (a list),
        answer, rating, correction, created (the feedback's time)."""
        where, args = [], []
        if min_rating is not None:
            where.append("f.rating >= ?")
            args.append(min_rating)
        if model is not None:
            where.append("r.model = ?")
            args.append(model)
        rows = self._query(
            "SELECT f.response_id, r.model, r.messages, r.answer, f.rating, f.correction, "
            "f.created FROM feedback f JOIN responses r ON r.id = f.response_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY f.created, f.rowid", args)
        for r in rows:
            r["messages"] = json.loads(r["messages"])
        return rows
