"""A progress line for long runs: pairs done of total, failures and errors so far, elapsed, ETA.

It is written on a line of its own, at most every ``interval_s`` seconds, from
the process that sees every report (plain pytest, or the xdist controller), so
it never lands in the middle of pytest's own output and works with and without
xdist.
"""

import time


class Progress:
    def __init__(self, total, interval_s, started=None):
        self.total = total
        self.interval_s = interval_s
        self.started = started if started is not None else time.monotonic()
        self.done = self.failed = self.errors = 0
        self._last = self.started

    def record(self, outcome):
        """Count one finished mesh test (``passed``, ``failed``, ``error`` or ``skipped``)."""
        self.done += 1
        if outcome == "failed":
            self.failed += 1
        elif outcome == "error":
            self.errors += 1

    def due(self, now=None):
        now = time.monotonic() if now is None else now
        if self.interval_s < 0 or self.done == 0 or self.done >= self.total:
            return False
        if now - self._last >= self.interval_s:
            self._last = now
            return True
        return False

    def line(self, now=None):
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        return "meshperf: %d/%d pairs measured, %d failed, %d errors, elapsed %s, ETA %s" % (
            self.done, self.total, self.failed, self.errors, _clock(elapsed), _clock(eta) if eta is not None else "?")


def _clock(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return ("%d:%02d:%02d" % (hours, rest // 60, rest % 60)) if hours else "%d:%02d" % divmod(rest, 60)
