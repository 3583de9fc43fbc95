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
