"""What the node has and how busy it is; psutil when present, /proc otherwise."""
from __future__ import annotations

import os
import time
from typing import Any

try:
    import psutil
except ImportError:  # the agent must run on nodes that have only python3
    psutil = None


def usable_cores() -> list[int]:
    """The cores this agent (and the tools it starts) may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def node_resources() -> dict[str, Any]:
    info = {"cpu_count": os.cpu_count(), "cores": usable_cores(), "psutil": psutil is not None,
            "nics": nics()}
    if psutil is not None:
        info["memory_total_bytes"] = psutil.virtual_memory().total
    else:
        info["memory_total_bytes"] = _meminfo().get("MemTotal")
    return info


def memory_used() -> dict[str, Any] | None:
    """{used_bytes, used_percent} now, or None."""
    if psutil is not None:
        vm = psutil.virtual_memory()
        return {"used_bytes": vm.total - vm.available, "used_percent": vm.percent}
    mem = _meminfo()
    if not mem.get("MemTotal") or mem.get("MemAvailable") is None:
        return None
    used = mem["MemTotal"] - mem["MemAvailable"]
    return {"used_bytes": used, "used_percent": round(100.0 * used / mem["MemTotal"], 1)}


def nics() -> dict[str, dict[str, Any]]:
    """Network interfaces in the agent's network namespace: up or not, link speed (None when unknown), MTU."""
    found = {}
    if psutil is not None:
        for name, stats in sorted(psutil.net_if_stats().items()):
            found[name] = {"up": stats.isup, "speed_mbps": stats.speed or None, "mtu": stats.mtu}
        return found
    base = "/sys/class/net"
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return found
    for name in names:
        found[name] = {"up": _read_sys(base, name, "operstate") in ("up", "unknown"),
                       "speed_mbps": _positive_int(_read_sys(base, name, "speed")),
                       "mtu": _positive_int(_read_sys(base, name, "mtu"))}
    return found


def _read_sys(base, name, leaf):
    try:
        with open(os.path.join(base, name, leaf)) as handle:
            return handle.read().strip()
    except OSError:  # e.g. reading speed of a virtual interface is EINVAL
        return None


def _positive_int(text):
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def node_load() -> dict[str, Any]:
    if psutil is not None:
        vm = psutil.virtual_memory()
        return {"cpu_percent": psutil.cpu_percent(interval=None), "memory_used_percent": vm.percent,
                "loadavg": list(os.getloadavg())}
    used = memory_used()
    return {"cpu_percent": None, "memory_used_percent": used and used["used_percent"],
            "loadavg": list(os.getloadavg())}


def own_usage(started_monotonic: float) -> dict[str, Any]:
    if psutil is not None:
        proc = psutil.Process()
        times = proc.cpu_times()
        cpu_s, rss = times.user + times.system, proc.memory_info().rss
    else:
        times = os.times()
        cpu_s, rss = times.user + times.system, None
    return {"cpu_seconds": round(cpu_s, 3), "rss_bytes": rss,
            "uptime_s": round(time.monotonic() - started_monotonic, 3)}


def _meminfo():
    values = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return values
