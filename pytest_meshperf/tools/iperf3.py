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

from pytest_meshperf.tools.args import INT, NUMBER, SIZE, Opt, as_list, flatten, parse, refusals, table
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


# Native options (iperf 3.12's, `iperf3 --help`): what meshperf passes on, each spelling with its value's
# pattern (tools/args.py: full names only, values checked, long ones passed as --name=value) ...
_SECONDS = Opt(("-t", "--time"), r"[0-9]{1,5}", "whole seconds")
_OMIT = Opt(("-O", "--omit"), r"[0-9]{1,3}", "whole seconds")
_ALLOWED = table([
    _SECONDS, _OMIT,
    Opt(("-u", "--udp")), Opt(("-R", "--reverse")), Opt(("--bidir",)), Opt(("-Z", "--zerocopy")),
    Opt(("-N", "--no-delay")), Opt(("-4", "--version4")), Opt(("-6", "--version6")), Opt(("--forceflush",)),
    Opt(("--udp-counters-64bit",)), Opt(("--repeating-payload",)), Opt(("--dont-fragment",)), Opt(("--sctp",)),
    Opt(("-P", "--parallel"), r"[0-9]{1,3}", "a number of streams"),
    Opt(("-b", "--bitrate"), SIZE + r"(/[0-9]{1,6})?", "a bit rate such as 100M or 1G (0: unlimited)"),
    Opt(("-w", "--window"), SIZE, "a size such as 256K"),
    Opt(("-l", "--length"), SIZE, "a size such as 128K"),
    Opt(("-C", "--congestion"), r"[a-z0-9_]{1,32}", "an algorithm name such as cubic"),
    Opt(("-M", "--set-mss"), INT, "a number of bytes"),
    Opt(("-S", "--tos"), r"(0x[0-9a-fA-F]{1,2}|0[0-7]{0,3}|[1-9][0-9]{0,2})", "a type of service, 0-255"),
    Opt(("--dscp",), r"([0-9]{1,2}|0x[0-9a-fA-F]{1,2}|[a-zA-Z0-9]{2,4})", "a DSCP value (0-63 or a name such as ef)"),
    Opt(("-L", "--flowlabel"), INT, "an IPv6 flow label"),
    Opt(("-A", "--affinity"), r"[0-9]{1,4}(,[0-9]{1,4})?", "a core, or client,server cores (2 or 2,3)"),
    Opt(("-i", "--interval"), NUMBER, "seconds between reports"),
    Opt(("-f", "--format"), r"[kmgtKMGT]", "one of k m g t K M G T"),
    Opt(("--connect-timeout",), INT, "milliseconds"),
    Opt(("--rcv-timeout",), INT, "milliseconds"),
    Opt(("--snd-timeout",), INT, "milliseconds"),
    Opt(("--pacing-timer",), SIZE, "microseconds"),
    Opt(("--fq-rate",), SIZE, "a bit rate such as 100M"),
    Opt(("--nstreams",), r"[0-9]{1,4}", "a number of SCTP streams"),
    Opt(("--bind-dev",), r"[A-Za-z0-9_.:-]{1,15}", "a network interface name"),
    Opt(("-T", "--title"), r"[A-Za-z0-9_.,:+=@-]{1,64}", "a word of letters, digits and _.,:+=@-"),
    Opt(("--extra-data",), r"[A-Za-z0-9_.,:+=@-]{1,256}", "a word of letters, digits and _.,:+=@-"),
])
# ... and what it refuses, with why: what it owns, and anything that names a file on a node.
_REFUSED = refusals([
    (("-c", "--client"), "meshperf sets the target (the destination's data address)"),
    (("-s", "--server"), "meshperf starts the server on the destination"),
    (("-p", "--port"), "meshperf's agent allocates the server port"),
    (("-J", "--json", "--json-stream"), "meshperf always reads iperf3's JSON"),
    (("-B", "--bind", "-X", "--xbind"), "meshperf binds both ends to their node's data address"),
    (("--cport",), "meshperf leaves the client port to the kernel (ports are recorded)"),
    (("-1", "--one-off"), "meshperf starts one-off servers itself"),
    (("-D", "--daemon"), "the agent supervises iperf3 in the foreground"),
    (("-I", "--pidfile"), "names a file on the node (the agent tracks its processes itself)"),
    (("--logfile",), "names a file on the node (meshperf reads iperf3's output from standard output)"),
    (("-F", "--file"), "names a file on the node (a measurement sends generated data)"),
    (("--username", "--rsa-public-key-path", "--rsa-private-key-path", "--authorized-users-path",
      "--time-skew-threshold"), "iperf3's authentication (key files on the node) is not supported"),
    (("--server-bitrate-limit", "--idle-timeout"), "a server option: meshperf starts the server"),
    (("-n", "--bytes", "-k", "--blockcount"), "meshperf bounds measurements in time: use duration"),
    (("-V", "--verbose"), "extra text breaks the JSON meshperf reads"),
    (("-d", "--debug"), "debug output breaks the JSON meshperf reads"),
    (("--timestamps",), "meshperf reads JSON, whose times it records itself"),
    (("-v", "--version", "-h", "--help"), "not a measurement"),
    (("--get-server-output",), "meshperf collects the server's own JSON itself"),
])


def native_params(args: Sequence[str]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Native iperf3 arguments -> ({meshperf parameter: value}, args passed through, []); ArgError names an
    argument meshperf does not pass on.  ``-t`` maps onto duration and ``-O`` onto omit (meshperf sizes its
    time limits from them); the rest of the allow-list is passed through to the client."""
    mapped, passed = {}, []
    for arg in parse(as_list(args), NAME, [_ALLOWED], [_REFUSED]):
        if arg.opt is _SECONDS:
            mapped["duration_s"] = int(arg.value)
        elif arg.opt is _OMIT:
            mapped["omit_s"] = int(arg.value)
        else:
            passed.append(arg)
    return mapped, flatten(passed), []


def server_argv(binary: str, port: int, bind: str | None = None, passphrase: str | None = None) -> list[str]:
    """A one-off server: serves exactly one test, then exits with its JSON."""
    argv = [binary, "-s", "-1", "-J", "-p", str(int(port))]
    if bind:
        argv += ["-B", bind]
    return argv


def client_argv(binary: str, target: str, port: int, params: Mapping[str, Any], bind: str | None = None,
                passphrase: str | None = None) -> list[str]:
    """The client command for one measurement; ``params`` uses CLIENT_PARAMS keys.  A one-off iperf3 server
    serves one test to whoever connects first within its life: it takes no ``passphrase``."""
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
