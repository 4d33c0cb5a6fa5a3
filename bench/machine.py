"""The machine and code a benchmark measured, for every bench script to print and record alike."""

import os
import platform
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def first_line(argv):
    """The first line a command prints (its version), or '?'."""
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        return out.stdout.decode("utf-8", "replace").strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def git_state():
    """The commit measured; '-dirty' when tracked files differed from it."""
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=10).stdout.decode().strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine(tools=False):
    """CPUs, memory, kernel, Python, meshperf and its commit, load; with ``tools``, the versions of iperf3,
    OpenSSH, Fabric and paramiko too (what the SSH benchmarks depend on)."""
    from pytest_meshperf import __version__
    mem_kb, cpu = 0, "?"
    try:
        with open("/proc/meminfo") as handle:
            mem_kb = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
    except (OSError, StopIteration):
        pass
    info = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "nproc": os.cpu_count(), "cpu": cpu,
            "memory_gib": round(mem_kb / 1024 / 1024, 1), "kernel": platform.release(),
            "python": platform.python_version(), "meshperf": __version__, "code": git_state(),
            "loadavg": os.getloadavg()}
    if tools:
        import fabric
        import paramiko
        info.update(iperf3=first_line(["iperf3", "--version"]), openssh=first_line(["ssh", "-V"]),
                    fabric=fabric.__version__, paramiko=paramiko.__version__)
    return info


def machine_line(info):
    """The one line every bench prints about the machine it ran on."""
    return (f"machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, Python {info['python']}, "
            f"meshperf {info['meshperf']} at {info['code']}")


def load_average(when):
    """'load average at the start: 0.12 0.30 0.25': other work on the machine skews every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f}"
