"""Terminal-safe text: user strings can never drive the terminal.

Module names, tags, run-directory names, anomaly messages and paths come from user code and from
files on disk. Printed raw, an ``ESC ]0;...BEL`` in a module name retitles the terminal, an
``ESC[2J`` wipes a TUI, and a right-to-left override (U+202E) makes ``layer.exe`` read
differently from what it is. :func:`safe` shows such characters as visible escapes instead
(``\\x1b``, ``\\u202e``) and keeps every other character, ordinary unicode included.

Rich markup (``[bold]``, ``[/oops]``) is a separate concern: pass safe text to rich as a
``rich.text.Text`` (never parsed as markup) or through :func:`safe_markup`.

Framework-free and import-light: ``import vizdebug`` installs :class:`SafeLogFilter` on the
``"vizdebug"`` logger through :func:`install_log_filter`.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SafeLogFilter", "install_log_filter", "safe", "safe_markup"]

#: C0 controls (newline and tab included: a name is one line), DEL, C1 controls (U+0080-U+009F;
#: U+009B is an 8-bit CSI that some terminals obey), and the bidi embeddings, overrides and
#: isolates U+202A-U+202E and U+2066-U+2069.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object) -> str:
    """Return ``text`` with control and bidi-override characters shown as visible escapes.

    Args:
        text: A string (anything else is converted with ``str`` first).

    Returns:
        The text, where each C0/C1 control character and DEL reads ``\\xNN`` and each bidi
        embedding/override/isolate (U+202A-U+202E, U+2066-U+2069) reads ``\\uNNNN``; every other
        character, ordinary unicode included, is unchanged.
    """
    s = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_visible, s)


def safe_markup(text: object) -> str:
    """:func:`safe` text, with rich markup escaped, for a string rich will parse as markup."""
    from rich.markup import escape

    return escape(safe(text))


class SafeLogFilter(logging.Filter):
    """Makes a log record's message terminal-safe (format first, then :func:`safe`).

    A module name in a warning is data from user code; this keeps it from reaching a terminal
    handler as raw control characters. The record is changed in place for every handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record.msg`` to its safe, formatted text; always keeps the record."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        cleaned = safe(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # The exception's text may quote a name too; keep the traceback's line breaks.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = "\n".join(safe(line) for line in text.split("\n"))
        return True


_FILTER = SafeLogFilter()


def install_log_filter(logger_name: str = "vizdebug") -> None:
    """Attach :class:`SafeLogFilter` to a logger once (idempotent).

    vizdebug's modules all log through the ``"vizdebug"`` logger itself, so a filter there sees
    every record before any handler does.
    """
    logger = logging.getLogger(logger_name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
