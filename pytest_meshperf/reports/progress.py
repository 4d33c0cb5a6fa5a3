"""A progress line for long runs: pairs done of total (and rounds, with ``rounds``), failures and errors so far,
elapsed, ETA.

It is written on a line of its own, at most every ``interval_s`` seconds, from
the process that sees every report (plain pytest, or the xdist controller), so
it never lands in the middle of pytest's own output and works with and without
xdist.
"""
from __future__ import annotations

import time


class Progress:
    def __init__(self, total: int, interval_s: float, started: float | None = None,
                 groups: dict[str, str] | None = None) -> None:
        """``groups``: each pair test's round (node id -> round key), when the run measures in rounds."""
        self.total = total
        self.interval_s = interval_s
        self.started = started if started is not None else time.monotonic()
        self.done = self.failed = self.errors = 0
        self._last = self.started
        self._left: dict[str, int] = {}
        for group in (groups or {}).values():
            self._left[group] = self._left.get(group, 0) + 1
        self._groups = groups or {}

    @property
    def rounds_done(self) -> int:
        return sum(1 for left in self._left.values() if left == 0)

    def record(self, outcome: str, nodeid: str | None = None) -> None:
        """Count one finished mesh test (``passed``, ``failed``, ``error`` or ``skipped``)."""
        group = self._groups.get(nodeid) if nodeid is not None else None
        if group is not None:
            self._left[group] -= 1
        self.done += 1
        if outcome == "failed":
            self.failed += 1
        elif outcome == "error":
            self.errors += 1

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.interval_s < 0 or self.done == 0 or self.done >= self.total:
            return False
        if now - self._last >= self.interval_s:
            self._last = now
            return True
        return False

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        rounds = f" ({self.rounds_done}/{len(self._left)} rounds)" if self._left else ""
        return (f"meshperf: {self.done}/{self.total} pairs measured{rounds}, {self.failed} failed, {self.errors} "
                f"errors, elapsed {_clock(elapsed)}, ETA {_clock(eta) if eta is not None else '?'}")


def _clock(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
