"""iperf3: command lines for server and client, and metrics from its JSON (-J).

Facts this relies on (iperf3 3.12 to 3.21):
- one server port runs one test at a time, so every measurement gets its own
  one-off server (``-s -1``) on a port the agent allocated;
- with ``-J`` the result, or ``{"error": ...}``, is one JSON document on stdout;
  the exit status is not reliable on its own (3.12 exits 0 on a refused connection);
- TCP throughput is the receiver's view (``end.sum_received``); retransmits come
  from the sender (``end.sum_sent``); UDP jitter and loss from ``end.sum_received``
  (older versions only have ``end.sum``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_meshperf.tools.args import ArgError, as_list, flatten, options
from pytest_meshperf.tools.errors import ToolFailure

NAME = "iperf3"
DEFAULT_BINARY = "iperf3"
SHARED_SERVER = False
INSTALL_HINT = "Debian: apt-get install iperf3"

# Client parameters the agent accepts, with their JSON types.  The controller
# (pytest_meshperf/params.py) parses user input into these canonical values.
CLIENT_PARAMS = {
    "duration_s": (int, float),
    "parallel": int,
    "reverse": bool,
    "bidir": bool,
    "udp": bool,
    "bitrate_bps": (int, float, type(None)),
    "omit_s": (int, float),
    "window": (str, type(None)),
    "length": (str, type(None)),
    "congestion": (str, type(None)),
    "zerocopy": bool,
    "connect_timeout_ms": (int, type(None)),
    "cpu_affinity": (str, type(None)),
    "args": list,
}
_SIZE = re.compile(r"^[0-9]{1,12}[KMG]?$")
_CONGESTION = re.compile(r"^[a-z0-9_]{1,32}$")
_AFFINITY = re.compile(r"^[0-9]{1,4}(,[0-9]{1,4})?$")


def _check_params(params):
    unknown = set(params) - set(CLIENT_PARAMS)
    if unknown:
        raise ValueError(f"unknown iperf3 parameters: {', '.join(sorted(unknown))}")
    for key, value in params.items():
        kinds = CLIENT_PARAMS[key]
        if isinstance(value, bool) and kinds is not bool and bool not in (kinds if isinstance(kinds, tuple) else ()):
            raise ValueError(f"iperf3 parameter {key} must not be a boolean")
        if not isinstance(value, kinds):
            raise ValueError(f"iperf3 parameter {key} has the wrong type ({type(value).__name__})")
    duration = params.get("duration_s", 10)
    if not 0 < duration <= 86400:
        raise ValueError("duration_s must be in (0, 86400]")
    if not 1 <= params.get("parallel", 1) <= 128:
        raise ValueError("parallel must be in 1..128")
    if not 0 <= params.get("omit_s", 0) <= 600:
        raise ValueError("omit_s must be in 0..600")
    if params.get("reverse") and params.get("bidir"):
        raise ValueError("reverse and bidir exclude each other")
    for key in ("window", "length"):
        if params.get(key) is not None and not _SIZE.match(params[key]):
            raise ValueError(f"{key} must look like 128K")
    if params.get("congestion") is not None and not _CONGESTION.match(params["congestion"]):
        raise ValueError("congestion must be an algorithm name such as cubic")
    if params.get("cpu_affinity") is not None and not _AFFINITY.match(params["cpu_affinity"]):
        raise ValueError("cpu_affinity must look like 2 or 2,3")
    if not all(isinstance(a, str) for a in params.get("args", [])):
        raise ValueError("args must be strings")


# Native options meshperf owns, with why; -t and -O map onto duration and omit.
_OWNED = {
    "-c": "meshperf sets the target (the destination's data address)", "--client": "-c",
    "-s": "meshperf starts the server on the destination", "--server": "-s",
    "-p": "meshperf's agent allocates the server port", "--port": "-p",
    "-J": "meshperf always reads iperf3's JSON", "--json": "-J", "--json-stream": "-J",
    "-B": "meshperf binds both ends to their node's data address", "--bind": "-B",
    "--cport": "meshperf leaves the client port to the kernel (ports are recorded)",
    "-1": "meshperf starts one-off servers itself", "--one-off": "-1",
    "-D": "the agent supervises iperf3 in the foreground", "--daemon": "-D",
    "-I": "the agent tracks its processes itself", "--pidfile": "-I",
    "--logfile": "meshperf reads iperf3's output from standard output",
    "-n": "meshperf bounds measurements in time: use duration", "--bytes": "-n",
    "-k": "meshperf bounds measurements in time: use duration", "--blockcount": "-k",
    "-V": "extra text breaks the JSON meshperf reads", "--verbose": "-V",
    "-v": "not a measurement", "--version": "-v", "-h": "not a measurement", "--help": "-h",
    "--get-server-output": "meshperf collects the server's own JSON itself",
}
_WHOLE_SECONDS = re.compile(r"^[0-9]{1,5}$")


def native_params(args: Sequence[str]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Native iperf3 arguments -> ({meshperf parameter: value}, args passed through, []); ArgError names an
    argument meshperf owns.  ``-t`` maps onto duration and ``-O`` onto omit (meshperf sizes its time limits
    from them); anything else is passed through to the client."""
    mapped, passed = {}, []
    for option, value, section in options(as_list(args)):
        why = _OWNED.get(option)
        if why is not None:
            raise ArgError(f"{option}: {_OWNED.get(why, why)}")
        if option in ("-t", "--time", "-O", "--omit"):
            if value is None or not _WHOLE_SECONDS.match(value):
                raise ArgError(f"{option} {value or ''}: give whole seconds")
            mapped["duration_s" if option in ("-t", "--time") else "omit_s"] = int(value)
        else:
            passed.append((option, value))
    return mapped, flatten(passed), []


def server_argv(binary: str, port: int, bind: str | None = None) -> list[str]:
    """A one-off server: serves exactly one test, then exits with its JSON."""
    argv = [binary, "-s", "-1", "-J", "-p", str(int(port))]
    if bind:
        argv += ["-B", bind]
    return argv


def client_argv(binary: str, target: str, port: int, params: Mapping[str, Any], bind: str | None = None) -> list[str]:
    """The client command for one measurement; ``params`` uses CLIENT_PARAMS keys."""
    _check_params(params)
    duration = params.get("duration_s", 10)
    argv = [binary, "-c", target, "-p", str(int(port)), "-J", "-t", _num(duration)]
    if bind:
        argv += ["-B", bind]
    if params.get("parallel", 1) != 1:
        argv += ["-P", str(params["parallel"])]
    if params.get("reverse"):
        argv.append("-R")
    if params.get("bidir"):
        argv.append("--bidir")
    if params.get("udp"):
        argv.append("-u")
    if params.get("bitrate_bps") is not None:
        argv += ["-b", f"{int(params['bitrate_bps'])}"]
    if params.get("omit_s"):
        argv += ["-O", _num(params["omit_s"])]
    if params.get("window"):
        argv += ["-w", params["window"]]
    if params.get("length"):
        argv += ["-l", params["length"]]
    if params.get("congestion"):
        argv += ["-C", params["congestion"]]
    if params.get("zerocopy"):
        argv.append("-Z")
    if params.get("connect_timeout_ms"):
        argv += ["--connect-timeout", str(params["connect_timeout_ms"])]
    if params.get("cpu_affinity"):
        argv += ["-A", params["cpu_affinity"]]
    passed = params.get("args", [])
    if passed and native_params(passed)[1] != passed:  # the agent checks again what reaches the command line
        raise ValueError("args must be plain pass-through arguments")
    return argv + passed


def expected_runtime_s(params: Mapping[str, Any]) -> float:
    """How long a client should run, before any grace the caller adds."""
    return float(params.get("duration_s", 10)) + float(params.get("omit_s", 0))


def _num(value):
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def version_argv(binary: str) -> list[str]:
    return [binary, "--version"]


# agent/boot.py keeps a copy (it runs without the package); test_boot holds the two equal.
VERSION_PATTERN = r"iperf\s+(\d+\.\d+(?:\.\d+)?\S*)"


def parse_version(text: str | None) -> str | None:
    """'iperf 3.12 (cJSON 1.7.15)' -> '3.12'."""
    match = re.search(VERSION_PATTERN, text or "")
    return match.group(1) if match else None


def load_output(stdout: str | None) -> dict[str, Any]:
    """The tool's JSON document, or ToolFailure when there is none."""
    text = (stdout or "").strip()
    if not text:
        raise ToolFailure("iperf3 printed no output")
    try:
        data = json.loads(text)
    except ValueError:
        # iperf3 can print a plain-text error before -J takes effect.
        raise ToolFailure(f"iperf3 printed no JSON: {text.splitlines()[-1][:300]}")
    if not isinstance(data, dict):
        raise ToolFailure("iperf3 printed unexpected JSON")
    if data.get("error"):
        raise ToolFailure(f"iperf3: {data['error']}")
    return data


def metrics_from_json(data: dict[str, Any]) -> dict[str, float]:
    """Metric-name -> value from a client's iperf3 JSON (names per pytest_meshperf.spec.metrics)."""
    end = data.get("end") or {}
    udp = (data.get("start") or {}).get("test_start", {}).get("protocol") == "UDP"
    received = end.get("sum_received") or end.get("sum") or {}
    sent = end.get("sum_sent") or end.get("sum") or {}
    if not received:
        raise ToolFailure("iperf3 JSON has no end summary (test did not complete)")
    metrics = {"throughput_bps": float(received.get("bits_per_second", 0.0))}
    if udp:
        for key, name in (("jitter_ms", "jitter_ms"), ("lost_percent", "lost_percent"),
                          ("lost_packets", "lost_packets"), ("packets", "packets")):
            if key in received:
                metrics[name] = float(received[key])
    elif "retransmits" in sent:
        metrics["retransmits"] = float(sent["retransmits"])
    reverse = end.get("sum_received_bidir_reverse")
    if reverse:
        metrics["throughput_reverse_bps"] = float(reverse.get("bits_per_second", 0.0))
    cpu = end.get("cpu_utilization_percent") or {}
    if "host_total" in cpu:
        metrics["cpu_local_percent"] = float(cpu["host_total"])
    if "remote_total" in cpu:
        metrics["cpu_remote_percent"] = float(cpu["remote_total"])
    return metrics


def client_ports(data: dict[str, Any]) -> list[int]:
    """Local ports of the data streams, from ``start.connected``."""
    return [c.get("local_port") for c in (data.get("start") or {}).get("connected", []) if c.get("local_port")]


def tool_version(data: dict[str, Any]) -> str | None:
    return parse_version((data.get("start") or {}).get("version", ""))
