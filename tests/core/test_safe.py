"""vizdebug.ui.safe: control and bidi characters become visible escapes, nothing else changes."""

from __future__ import annotations

import io
import logging
import sys
import warnings

import pytest
from rich.console import Console
from rich.text import Text

from vizdebug.ui.safe import SafeLogFilter, install_log_filter, safe, safe_markup


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC: set the window title
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear the screen
        ("conv\u202egnp.exe", "conv\\u202egnp.exe"),  # right-to-left override
        ("a\u2066b\u2069c", "a\\u2066b\\u2069c"),  # isolates
        ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
        ("\u2067\u2068", "\\u2067\\u2068"),
        ("x\x9b2Jy", "x\\x9b2Jy"),  # C1 CSI, obeyed by some terminals
        ("del\x7f", "del\\x7f"),
        ("\x00\x08\r\n\t", "\\x00\\x08\\x0d\\x0a\\x09"),
        ("\x80\x9f", "\\x80\\x9f"),
    ],
)
def test_controls_and_bidi_are_shown_visibly(raw: str, shown: str) -> None:
    assert safe(raw) == shown


@pytest.mark.parametrize(
    "text",
    [
        "",
        "encoder.layers.0.self_attn",
        "Schicht_ä_ö_ß · 层 · слой · طبقة · レイヤー",
        "emoji 🔥 and NBSP\u00a0and é\u0301",  # U+00A0 is printable, above the C1 range
        "\u2028 is not a bidi override",  # U+2028-U+2029 are neither C0/C1 nor bidi overrides
        "already escaped \\x1b stays as typed",
        "[bold]markup[/] is not safe()'s business",
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert safe(text) == text


def test_every_code_point_in_the_unsafe_ranges_is_escaped() -> None:
    unsafe = [
        *range(0x00, 0x20),
        *range(0x7F, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ]
    for code in unsafe:
        out = safe(f"a{chr(code)}b")
        assert chr(code) not in out and out.startswith("a\\") and out.endswith("b"), hex(code)
    # Nothing in the output of safe() is itself unsafe, whatever the input.
    everything = "".join(chr(c) for c in range(0x3000))
    assert not any(ord(c) in unsafe for c in safe(everything))


def test_non_strings_are_converted() -> None:
    assert safe(3) == "3"
    assert safe(("a\x1b",)) == "('a\\x1b',)"


def test_markup_is_escaped_for_rich() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    console.print(safe_markup("[/oops] [bold]x\x1b[2J"))  # would raise MarkupError raw
    assert out.getvalue().strip() == "[/oops] [bold]x\\x1b[2J"
    console.print(Text(safe("[/oops]")))
    assert "[/oops]" in out.getvalue()


def test_log_filter_cleans_message_args_and_exception_text() -> None:
    logger = logging.getLogger("vizdebug.test_safe_isolated")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.addFilter(SafeLogFilter())
    try:
        logger.warning("module %s produced NaN", "evil\x1b]0;title\x07\u202e")
        try:
            raise ValueError("bad name \x1b[2J")
        except ValueError:
            logger.exception("sink failed for %r", "t\x1b")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "module evil\\x1b]0;title\\x07\\u202e produced NaN" in text
    assert "ValueError: bad name \\x1b[2J" in text
    assert "Traceback (most recent call last):\n" in text  # line breaks of a traceback kept


def test_import_vizdebug_installs_the_filter_once() -> None:
    import vizdebug  # noqa: F401

    logger = logging.getLogger("vizdebug")
    install_log_filter()
    install_log_filter()
    assert sum(isinstance(f, SafeLogFilter) for f in logger.filters) == 1


def test_vizdebug_logger_output_is_safe(capsys: pytest.CaptureFixture[str]) -> None:
    import vizdebug  # noqa: F401

    logger = logging.getLogger("vizdebug")
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    try:
        logger.warning("could not write %s", "run\x1b[2J")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "run\\x1b[2J" in err and "\x1b" not in err


def test_non_finite_warning_and_error_texts_are_safe() -> None:
    from vizdebug.adapters import NonFiniteError, NonFiniteWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("NaN first in \x1b]0;x\x07", NonFiniteWarning, stacklevel=1)
    assert str(caught[0].message) == "NaN first in \\x1b]0;x\\x07"

    class Finding:
        message = "NaN in \u202elayer"

    assert str(NonFiniteError(Finding())) == "NaN in \\u202elayer"
