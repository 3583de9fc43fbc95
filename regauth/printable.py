"""Text from elsewhere (a registry's error message, a challenge parameter) made safe to print.

A registry controls the bytes of its error messages. Written raw to a terminal, an ESC sequence can
clear the screen or move the cursor, and a CR or newline can start a fake ``ok`` line. Every edge that
prints (the CLI, the helper's stderr, the logs) passes its text through ``printable``. It imports
nothing, so the helper's hot path can use it.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with each character that ``str.isprintable`` rejects written as its Python escape.

    That is every C0 and C1 control (ESC, CR, LF, BEL, CSI ``\\x9b``, DEL), the line and paragraph
    separators, and the format characters, bidirectional overrides among them, that can make a
    terminal show text in another order than it was sent. The space stays; the result is one line.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def quoted(text: str, limit: int = 80) -> str:
    """``text`` double-quoted for a one-line message: escaped as ``printable`` does and to ASCII (a
    look-alike letter in a host name shows as what it is), and shortened past ``limit`` characters, so
    that a megabyte of input cannot become a megabyte of error line."""
    shown = printable(text).encode("ascii", "backslashreplace").decode("ascii").replace('"', '\\"')
    if len(shown) > limit:
        shown = f"{shown[: limit // 2]}...{shown[-12:]}"
    return f'"{shown}"'
