"""What the node has and how busy it is; psutil when present, /proc otherwise."""

import os
import time

try:
    import psutil
except ImportError:  # the agent must run on nodes that have only python3
    psutil = None


def node_resources():
    info = {"cpu_count": os.cpu_count(), "psutil": psutil is not None}
    if psutil is not None:
        info["memory_total_bytes"] = psutil.virtual_memory().total
    else:
        info["memory_total_bytes"] = _meminfo().get("MemTotal")
    return info


def node_load():
    if psutil is not None:
        vm = psutil.virtual_memory()
        return {"cpu_percent": psutil.cpu_percent(interval=None), "memory_used_percent": vm.percent,
                "loadavg": list(os.getloadavg())}
    mem = _meminfo()
    used = None
    if mem.get("MemTotal") and mem.get("MemAvailable") is not None:
        used = round(100.0 * (1 - mem["MemAvailable"] / mem["MemTotal"]), 1)
    return {"cpu_percent": None, "memory_used_percent": used, "loadavg": list(os.getloadavg())}


def own_usage(started_monotonic):
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
