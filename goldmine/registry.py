"""The run registry: every command records what it did, in SQLite and a run directory.

    GOLDMINE_HOME/                 (default: ./runs)
      registry.db                  one row per run: command, config, git revision, times,
                                   status, metrics, artefacts, parent runs
      pretrain-20261122-233001-a1b2/
        run.json                   the run's id, so a path can be traced back to its run
        ...                        what the command wrote

Lineage: when a command reads a path that lives inside another run's directory (a tokenizer,
token shards, a checkpoint), that run becomes a parent of the new one.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from goldmine.errors import GoldmineError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id         TEXT PRIMARY KEY,
    command    TEXT NOT NULL,
    status     TEXT NOT NULL,
    config     TEXT NOT NULL,
    git_rev    TEXT,
    version    TEXT,
    started    REAL NOT NULL,
    ended      REAL,
    metrics    TEXT NOT NULL DEFAULT '{}',
    artifacts  TEXT NOT NULL DEFAULT '{}',
    parents    TEXT NOT NULL DEFAULT '[]',
    run_dir    TEXT NOT NULL,
    pid        INTEGER,
    host       TEXT,
    error      TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
"""
JSON_COLUMNS = ("config", "metrics", "artifacts", "parents")


def home() -> Path:
    return Path(os.environ.get("GOLDMINE_HOME") or "runs")


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The goldmine source's git commit (with '+dirty' for local changes), if it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Registry:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else home() / "registry.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise GoldmineError(f"{self.path}: not a goldmine registry database ({e})") from None
        self.db.row_factory = sqlite3.Row

    # -- writing ----------------------------------------------------------------------------
    def insert(self, row: dict[str, Any]) -> None:
        row = {k: json.dumps(v) if k in JSON_COLUMNS else v for k, v in row.items()}
        cols = ", ".join(row)
        self.db.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()))

    def update(self, run_id: str, **fields: Any) -> None:
        fields = {k: json.dumps(v) if k in JSON_COLUMNS else v for k, v in fields.items()}
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*fields.values(), run_id])

    # -- reading ----------------------------------------------------------------------------
    def _decode(self, row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        for k in JSON_COLUMNS:
            d[k] = json.loads(d[k]) if d[k] else ({} if k != "parents" else [])
        if d["status"] == "running" and d["host"] == socket.gethostname() and d["pid"] \
                and not _pid_alive(d["pid"]):
            d["status"] = "killed"  # the process died without saying so (SIGKILL, power cut)
        return d

    def get(self, ref: str) -> dict[str, Any]:
        """A run by id, unique id prefix, or the path of its directory."""
        p = Path(ref)
        if p.exists():
            found = run_id_for_path(p)
            if found:
                ref = found
        rows = self.db.execute("SELECT * FROM runs WHERE id = ? OR id LIKE ? ORDER BY started",
                               (ref, ref + "%")).fetchall()
        exact = [r for r in rows if r["id"] == ref]
        if exact:
            return self._decode(exact[0])
        if len(rows) == 1:
            return self._decode(rows[0])
        if not rows:
            raise GoldmineError(f"no run {ref!r} in {self.path} (see `goldmine runs list`)")
        raise GoldmineError(f"{ref!r} matches {len(rows)} runs; give more of the id")

    def list(self, limit: int | None = 20, command: str | None = None,
             status: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM runs", []
        if command:
            q += " WHERE command = ? OR command LIKE ?"
            args += [command, command + " %"]
        q += " ORDER BY started DESC"
        runs = [self._decode(r) for r in self.db.execute(q, args).fetchall()]
        if status:
            runs = [r for r in runs if r["status"] == status]
        return runs[:limit] if limit else runs


def latest_completed(*commands: str) -> dict[str, Any] | None:
    """The newest completed run of the first of `commands` that has one, or None."""
    reg = Registry()
    for command in commands:
        runs = reg.list(limit=None, command=command, status="completed")
        if runs:
            return runs[0]
    return None


def run_id_for_path(path: str | Path) -> str | None:
    """The id of the run whose directory holds `path` (walking up to find run.json)."""
    p = Path(path).resolve()
    if not p.exists():  # e.g. a run id given where a path may go
        return None
    for d in (p, *p.parents):
        marker = d / "run.json"
        if marker.is_file():
            try:
                return json.loads(marker.read_text())["id"]
            except (ValueError, KeyError, OSError):
                return None
    return None


def new_run_id(command: str) -> str:
    slug = command.split()[0]
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class Run:
    """A run being recorded. Metrics and artefacts are written through to the database."""

    def __init__(self, registry: Registry, run_id: str, run_dir: Path, command: str):
        self.registry, self.id, self.dir, self.command = registry, run_id, run_dir, command
        row = registry.get(run_id)
        self.metrics: dict[str, Any] = row["metrics"]
        self.artifacts: dict[str, str] = row["artifacts"]
        self.parents: list[str] = row["parents"]

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        self.metrics.update(metrics)
        self.registry.update(self.id, metrics=self.metrics)

    def add_artifact(self, name: str, path: str | Path) -> None:
        self.artifacts[name] = str(Path(path).resolve())
        self.registry.update(self.id, artifacts=self.artifacts)

    def add_parent_from_path(self, path: str | Path | None) -> None:
        """Record the run that produced `path` (if any) as a parent of this one."""
        if path is None:
            return
        parent = run_id_for_path(path)
        if parent and parent != self.id and parent not in self.parents:
            self.parents.append(parent)
            self.registry.update(self.id, parents=self.parents)

    def set_config(self, config: dict[str, Any]) -> None:
        self.registry.update(self.id, config=config)


@contextmanager
def start_run(command: str, config: dict[str, Any], out: str | Path | None = None,
              resume: str | None = None, registry: Registry | None = None) -> Iterator[Run]:
    """Record a run around a block of work.

    `out`: the run directory (default: GOLDMINE_HOME/<run id>). `resume`: the id of an earlier
    run to continue; it is marked running again and keeps its id, directory and metrics.
    On an exception the run is marked failed (or interrupted, for Ctrl-C) and the error kept.
    """
    reg = registry or Registry()
    if resume:
        row = reg.get(resume)
        run_id, run_dir = row["id"], Path(row["run_dir"])
        reg.update(run_id, status="running", ended=None, error=None, pid=os.getpid(),
                   host=socket.gethostname())
    else:
        run_id = new_run_id(command)
        run_dir = Path(out) if out else home() / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps({"id": run_id, "command": command}) + "\n")
        from goldmine import __version__

        reg.insert(dict(id=run_id, command=command, status="running", config=config,
                        git_rev=git_revision(), version=__version__, started=time.time(),
                        run_dir=str(run_dir.resolve()), pid=os.getpid(),
                        host=socket.gethostname()))
    run = Run(reg, run_id, run_dir.resolve(), command)
    try:
        yield run
    except KeyboardInterrupt:
        reg.update(run_id, status="interrupted", ended=time.time(), error="interrupted (Ctrl-C)")
        raise
    except BaseException as e:
        reg.update(run_id, status="failed", ended=time.time(), error=f"{type(e).__name__}: {e}")
        raise
    else:
        reg.update(run_id, status="completed", ended=time.time())
