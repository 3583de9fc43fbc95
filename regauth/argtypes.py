"""argparse types for the command lines' options, so a bad value is refused in argparse's one line."""

from __future__ import annotations

import argparse
import math


def amount(text: str) -> float:
    """Seconds or days: a finite number, 0 or more (``float`` alone lets in nan, inf and negatives)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number, 0 or more")
    return value


def path(text: str) -> str:
    """A file or directory name: an empty one is refused, never taken for "not given" (which is the
    system default for some options: ``--config ""`` from an unset variable must not write /etc)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return text


def nonempty(text: str) -> str:
    """A value whose absence means something else (no cache cap, no shared cache, no proxy): an empty
    one is refused rather than taken for the absence."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value")
    return text
