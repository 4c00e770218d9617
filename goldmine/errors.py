"""The one exception type users see.

A `GoldmineError` carries a one-line message that names the file, line or field at fault and
what was expected. The CLI prints it without a traceback (unless `--debug`) and exits non-zero.
"""

from __future__ import annotations


class GoldmineError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

