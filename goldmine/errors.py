"""The one exception type users see.

A `GoldmineError` carries a one-line message that names the file, line or field at fault and
what was expected. The CLI prints it without a traceback (unless `--debug`) and exits non-zero.
"""

from __future__ import annotations


class GoldmineError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


def require_file(path, what: str = "file", allow_empty: bool = False):
    """Return `path` as a Path if it is an existing, non-empty file; else raise GoldmineError."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise GoldmineError(f"{p}: {what} not found")
    if p.is_dir():
        raise GoldmineError(f"{p}: expected a {what}, found a directory")
    if not allow_empty and p.stat().st_size == 0:
        raise GoldmineError(f"{p}: {what} is empty")
    return p
