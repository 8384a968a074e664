"""The machine's available memory, and refusing work whose memory can be computed up front and cannot
fit, before anything runs (the number in the message)."""
from __future__ import annotations

import os


def available_bytes() -> int | None:
    """Memory available to a new allocation (Linux: MemAvailable), else physical memory; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def gib(count: int | float) -> str:
    return f"{count / 2 ** 30:,.1f} GiB"


def check_fits(needed: int, what: str) -> None:
    """ValueError when ``needed`` bytes (for ``what``) exceed the memory available now."""
    available = available_bytes()
    if available is not None and needed > available:
        raise ValueError(f"{what} needs at least {gib(needed)} of memory; {gib(available)} is available")
