"""Progress and cancellation for long engine work, without any GUI: plain callables.

Long functions take ``progress: Progress | None`` and call ``progress.update(fraction, message)``; it
raises ``Cancelled`` once ``progress.cancel()`` was called (from any thread), so work stops at the next
step and leaves nothing half-written.
"""
from __future__ import annotations

import threading
from typing import Callable


class Cancelled(Exception):
    """The user cancelled the job."""


class Progress:
    """Reports progress through ``callback(fraction, message)`` and carries a thread-safe cancel flag."""

    def __init__(self, callback: Callable[[float, str], None] | None = None):
        self._callback = callback
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` if the job was cancelled."""
        if self._cancelled.is_set():
            raise Cancelled("cancelled by the user")

    def update(self, fraction: float, message: str = "") -> None:
        self.check()
        if self._callback is not None:
            self._callback(min(max(fraction, 0.0), 1.0), message)


def report(progress: Progress | None, fraction: float, message: str = "") -> None:
    """``progress.update`` when a Progress was given; a no-op otherwise."""
    if progress is not None:
        progress.update(fraction, message)
