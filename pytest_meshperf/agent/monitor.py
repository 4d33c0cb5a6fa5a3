"""Per-core CPU (with softirq) and memory of the node, sampled while tool processes run.

A sampler thread reads the kernel's per-core counters every ``interval_s``.
Each tool process opens a window when it starts and closes it when it ends;
the window's summary (peaks per sample, and means over the whole window from
the counters at its two ends) travels back with the process's result, so it
costs no extra call.  A measurement "measured the CPU, not the network" when a
core was saturated for most of it: ``saturated_fraction`` says how often.
On nodes that share a machine (or with other load) a saturated core may be
someone else's, so each window also follows its own tool process's CPU time
(``process_cpu_percent``, of one core), which other load cannot inflate.
"""
from __future__ import annotations

import os
import threading
import time

try:
    import psutil
except ImportError:  # the agent must run on nodes that have only python3
    psutil = None

from typing import Any

from pytest_meshperf.agent.resources import memory_used

SATURATED_PERCENT = 90.0      # a core this busy in a sample counts as saturated
MAX_WINDOWS = 4096            # bounds memory if windows are never closed


def read_cores() -> list[tuple[float, float, float]]:
    """Per core: (busy, softirq, total) jiffies (psutil when present, else /proc/stat)."""
    if psutil is not None:
        cores = []
        for t in psutil.cpu_times(percpu=True):
            idle = t.idle + getattr(t, "iowait", 0.0)
            total = sum(t[:8]) if len(t) >= 8 else sum(t)
            cores.append((total - idle, getattr(t, "softirq", 0.0), total))
        return cores
    cores = []
    with open("/proc/stat") as handle:
        for line in handle:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            values = [int(v) for v in line.split()[1:9]]
            values += [0] * (8 - len(values))
            user, nice, system, idle, iowait, irq, softirq, steal = values
            total = sum(values)
            cores.append((total - idle - iowait, softirq, total))
    return cores


def _percent(part, whole):
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used so far, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return None


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class _Window:
    def __init__(self, cores, now, pid=None, cpu=None):
        self.pid, self.cpu = pid, cpu
        self.process = []                 # (monotonic, cpu seconds): first and latest reading
        self.opened = now
        self.first = cores
        self.samples = 0
        self.saturated = 0
        self.busy_peak = (0.0, None)      # (percent, core)
        self.softirq_peak = (0.0, None)
        self.total_peak = 0.0
        self.memory_peak = None

    def add(self, busy, softirq, memory, now):
        self.samples += 1
        used = process_cpu_s(self.pid) if self.pid else None
        if used is not None:
            self.process = (self.process[:1] or [(now, used)]) + [(now, used)]
        hottest = max(range(len(busy)), key=busy.__getitem__) if busy else None
        if hottest is not None:
            if busy[hottest] >= SATURATED_PERCENT:
                self.saturated += 1
            if busy[hottest] >= self.busy_peak[0]:
                self.busy_peak = (busy[hottest], hottest)
            top_softirq = max(range(len(softirq)), key=softirq.__getitem__)
            if softirq[top_softirq] >= self.softirq_peak[0]:
                self.softirq_peak = (softirq[top_softirq], top_softirq)
            self.total_peak = max(self.total_peak, round(sum(busy) / len(busy), 1))
        if memory and (self.memory_peak is None or memory["used_bytes"] > self.memory_peak["used_bytes"]):
            self.memory_peak = memory

    def summary(self, cores, now):
        mean_busy = [_percent(b - b0, t - t0) for (b, _, t), (b0, _, t0) in zip(cores, self.first)]
        mean_softirq = [_percent(s - s0, t - t0) for (_, s, t), (_, s0, t0) in zip(cores, self.first)]
        hottest = max(range(len(mean_busy)), key=mean_busy.__getitem__) if mean_busy else None
        summary = {
            "window_s": round(now - self.opened, 3),
            "samples": self.samples,
            "cores": len(cores),
            "core_busy_mean_percent": mean_busy,
            "core_softirq_mean_percent": mean_softirq,
            "busiest_core": hottest,
            "busiest_core_mean_percent": mean_busy[hottest] if hottest is not None else None,
            "core_busy_peak_percent": self.busy_peak[0], "core_busy_peak_core": self.busy_peak[1],
            "softirq_peak_percent": self.softirq_peak[0], "softirq_peak_core": self.softirq_peak[1],
            "cpu_total_peak_percent": self.total_peak,
            "memory_used_peak_bytes": (self.memory_peak or {}).get("used_bytes"),
            "memory_used_peak_percent": (self.memory_peak or {}).get("used_percent"),
        }
        summary["pinned_core"] = self.cpu
        if len(self.process) == 2 and self.process[1][0] > self.process[0][0]:
            (t0, c0), (t1, c1) = self.process
            summary["process_cpu_percent"] = round(100.0 * (c1 - c0) / (t1 - t0), 1)
        else:
            summary["process_cpu_percent"] = None
        # Without a whole sample (a window shorter than the interval) the window's own mean decides.
        if self.samples:
            summary["saturated_fraction"] = round(self.saturated / self.samples, 3)
        else:
            summary["saturated_fraction"] = 1.0 if (summary["busiest_core_mean_percent"] or 0) >= SATURATED_PERCENT else 0.0
        return summary


class CpuMonitor:
    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self._windows = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last = None
        self._thread = None
        try:
            read_cores()
            self.available = True
        except (OSError, ValueError):  # not Linux and no psutil: processes simply carry no monitor data
            self.available = False

    def start(self) -> CpuMonitor:
        if self.available and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def open(self, key: str, pid: int | None = None, cpu: int | None = None) -> None:
        """Start a window for tool process ``key`` (``pid``: its process; ``cpu``: the core it is pinned to)."""
        if not self.available:
            return
        cores = read_cores()
        with self._lock:
            if len(self._windows) < MAX_WINDOWS:
                self._windows[key] = _Window(cores, time.monotonic(), pid, cpu)

    def close(self, key: str) -> dict[str, Any] | None:
        """The window's summary, or None (no monitoring on this node, or no such window)."""
        with self._lock:
            window = self._windows.pop(key, None)
        if window is None:
            return None
        return window.summary(read_cores(), time.monotonic())

    def _loop(self):
        while not self._stop.wait(self.interval_s):
            with self._lock:
                idle = not self._windows
            if idle:  # nothing runs: read nothing (agents idle most of a run)
                self._last = None
                continue
            cores = read_cores()
            previous, self._last = self._last, cores
            if previous is None or len(previous) != len(cores):
                continue  # the first tick of a busy spell only sets the starting point
            busy = [_percent(b - b0, t - t0) for (b, _, t), (b0, _, t0) in zip(cores, previous)]
            softirq = [_percent(s - s0, t - t0) for (_, s, t), (_, s0, t0) in zip(cores, previous)]
            memory = memory_used()
            now = time.monotonic()
            with self._lock:
                windows = list(self._windows.values())
            for window in windows:
                window.add(busy, softirq, memory, now)
