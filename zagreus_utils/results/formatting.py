"""Numbers written for people: counts with K/M/B/T suffixes, token counts, byte sizes, durations.

One place for them, so a table, a plot and an audit finding write the same number the same way.
"""

from __future__ import annotations

import math

MISSING = "—"

_SCALES = (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def scaled(value: float, spec: str = ".3g", units=_SCALES, below: str = ".3g", sep: str = "") -> str:
    """``value`` in the largest of ``units`` (``(suffix, size)``, largest first) it reaches."""
    for suffix, size in units:
        if abs(value) >= size:
            return f"{value / size:{spec}}{sep}{suffix}"
    return f"{value:{below}}"


def human(value: float) -> str:
    """3 significant digits with a K/M/B/T suffix, like nanotron's logs: ``182K``, ``4.8e+02B`` -> ``480B``."""
    return scaled(value)


def count(n: float) -> str:
    """``437760960`` -> ``437.8M``."""
    return scaled(n, ".1f", below="g")


def params(n: float) -> str:
    """A parameter count: ``1.23B`` from a billion up, else ``437.8M``."""
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def tokens(v) -> str:
    """A token count for a table (``—`` when missing): ``480B``, ``12.3k``."""
    if _missing(v):
        return MISSING
    return scaled(float(v), units=(("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)), below=".0f")


def size_bytes(v) -> str:
    """A size in decimal units for a table (``—`` when missing): ``1.2 GB``, ``512 B``."""
    if _missing(v):
        return MISSING
    v = float(v)
    return scaled(v, units=(("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)), sep=" ") if v >= 1e3 \
        else f"{v:.0f} B"


def memory(n: float) -> str:
    """Bytes of memory in binary units: ``1.50 GiB`` from a tenth of a GiB up, else ``12.0 MiB``."""
    return f"{n / 2**30:.2f} GiB" if n >= 0.1 * 2**30 else f"{n / 2**20:.1f} MiB"


def integer(v) -> str:
    """``1234567`` -> ``1,234,567`` (``—`` when missing)."""
    return MISSING if _missing(v) else f"{int(v):,}"


def percent(v) -> str:
    """``0.123`` -> ``12.3%`` (``—`` when missing)."""
    return MISSING if _missing(v) else f"{v:.1%}"


def duration(seconds: float) -> str:
    """Seconds as nanotron's logs write them: ``131 days, 1:45:39``."""
    days, rest = divmod(int(round(seconds)), 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days} day{'s' if days != 1 else ''}, {text}" if days else text
