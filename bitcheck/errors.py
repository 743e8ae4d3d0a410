"""The one error type for user mistakes. Every library module raises a subclass of `UserError` for
what the user can fix (an option, a file, a run directory, their model factory); the CLI maps
exactly this type to one line on stderr and exit 2, never a traceback."""
from __future__ import annotations


class UserError(ValueError):
    """A user mistake: its message is the one line the CLI prints."""


def first_line(e: Exception) -> str:
    """An exception's first line (or its type), short enough for a one-line user error."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]
