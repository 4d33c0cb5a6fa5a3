"""netperf: command lines for netserver and OMNI clients, native arguments, and metrics from its output.

Facts this relies on (netperf 2.7):
- netserver takes concurrent clients (it forks per test) and lives long: one per node and data address,
  started by the agent on a port it allocates and shared by every measurement (``SHARED_SERVER``);
  ``-D`` keeps it in the foreground (not daemonized), so the agent supervises it like any tool;
- test options follow ``--``; before it, ``-d`` means debug, after it the direction (send, recv, rr);
- ``-P 0`` drops the banner and ``-k SELECTORS`` prints one ``NAME=VALUE`` line per selector; a selector
  netperf does not know prints nothing, so selectors are checked here against netperf's own list;
- latencies are in microseconds; LOCAL_CPU_UTIL and REMOTE_CPU_UTIL need ``-c`` and ``-C`` and are
  system-wide (the whole node's CPU, not netperf's own);
- a failure (no netserver, a refused connection) is text on stderr and a non-zero exit status.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_meshperf.tools.args import ArgError, as_list, flatten, options
from pytest_meshperf.tools.errors import ToolFailure

NAME = "netperf"
DEFAULT_BINARY = "netperf"
SERVER_BINARY = "netserver"
SHARED_SERVER = True
INSTALL_HINT = "Debian ships it in the non-free component: add non-free to the node's apt source, then apt-get " \
    "install netperf"

TESTS = ("send", "recv", "rr")
# What meshperf asks for on every run; a user's selectors (-o, or selectors=) are added to these.
DEFAULT_SELECTORS = ("THROUGHPUT", "THROUGHPUT_UNITS", "TRANSACTION_RATE", "MEAN_LATENCY", "P50_LATENCY",
                     "P90_LATENCY", "P99_LATENCY", "LOCAL_CPU_UTIL", "REMOTE_CPU_UTIL")
# A UDP send also counts datagrams on both ends: loss, as iperf3 reports it for UDP.
UDP_SEND_SELECTORS = ("PROTOCOL", "DIRECTION", "LOCAL_SEND_CALLS", "REMOTE_RECV_CALLS")
# netperf 2.7.0's own list: the output of `netperf -t omni -H HOST -- -k '?'`.
KNOWN_SELECTORS = frozenset("""
OUTPUT_NONE SOCKET_TYPE PROTOCOL DIRECTION ELAPSED_TIME THROUGHPUT THROUGHPUT_UNITS LSS_SIZE_REQ LSS_SIZE
LSS_SIZE_END LSR_SIZE_REQ LSR_SIZE LSR_SIZE_END RSS_SIZE_REQ RSS_SIZE RSS_SIZE_END RSR_SIZE_REQ RSR_SIZE
RSR_SIZE_END LOCAL_SEND_SIZE LOCAL_RECV_SIZE REMOTE_SEND_SIZE REMOTE_RECV_SIZE REQUEST_SIZE RESPONSE_SIZE
LOCAL_CPU_UTIL LOCAL_CPU_PERCENT_USER LOCAL_CPU_PERCENT_SYSTEM LOCAL_CPU_PERCENT_IOWAIT LOCAL_CPU_PERCENT_IRQ
LOCAL_CPU_PERCENT_SWINTR LOCAL_CPU_METHOD LOCAL_SD REMOTE_CPU_UTIL REMOTE_CPU_PERCENT_USER
REMOTE_CPU_PERCENT_SYSTEM REMOTE_CPU_PERCENT_IOWAIT REMOTE_CPU_PERCENT_IRQ REMOTE_CPU_PERCENT_SWINTR
REMOTE_CPU_METHOD REMOTE_SD SD_UNITS CONFIDENCE_LEVEL CONFIDENCE_INTERVAL CONFIDENCE_ITERATION THROUGHPUT_CONFID
LOCAL_CPU_CONFID REMOTE_CPU_CONFID TRANSACTION_RATE RT_LATENCY BURST_SIZE LOCAL_TRANSPORT_RETRANS
REMOTE_TRANSPORT_RETRANS TRANSPORT_MSS LOCAL_SEND_THROUGHPUT LOCAL_RECV_THROUGHPUT REMOTE_SEND_THROUGHPUT
REMOTE_RECV_THROUGHPUT LOCAL_CPU_BIND LOCAL_CPU_COUNT LOCAL_CPU_PEAK_UTIL LOCAL_CPU_PEAK_ID LOCAL_CPU_MODEL
LOCAL_CPU_FREQUENCY REMOTE_CPU_BIND REMOTE_CPU_COUNT REMOTE_CPU_PEAK_UTIL REMOTE_CPU_PEAK_ID REMOTE_CPU_MODEL
REMOTE_CPU_FREQUENCY SOURCE_PORT SOURCE_ADDR SOURCE_FAMILY DEST_PORT DEST_ADDR DEST_FAMILY LOCAL_SEND_CALLS
LOCAL_RECV_CALLS LOCAL_BYTES_PER_RECV LOCAL_BYTES_PER_SEND LOCAL_BYTES_SENT LOCAL_BYTES_RECVD LOCAL_BYTES_XFERD
LOCAL_SEND_OFFSET LOCAL_RECV_OFFSET LOCAL_SEND_ALIGN LOCAL_RECV_ALIGN LOCAL_SEND_WIDTH LOCAL_RECV_WIDTH
LOCAL_SEND_DIRTY_COUNT LOCAL_RECV_DIRTY_COUNT LOCAL_RECV_CLEAN_COUNT LOCAL_NODELAY LOCAL_CORK REMOTE_SEND_CALLS
REMOTE_RECV_CALLS REMOTE_BYTES_PER_RECV REMOTE_BYTES_PER_SEND REMOTE_BYTES_SENT REMOTE_BYTES_RECVD
REMOTE_BYTES_XFERD REMOTE_SEND_OFFSET REMOTE_RECV_OFFSET REMOTE_SEND_ALIGN REMOTE_RECV_ALIGN REMOTE_SEND_WIDTH
REMOTE_RECV_WIDTH REMOTE_SEND_DIRTY_COUNT REMOTE_RECV_DIRTY_COUNT REMOTE_RECV_CLEAN_COUNT REMOTE_NODELAY
REMOTE_CORK LOCAL_SYSNAME LOCAL_SYSTEM_MODEL LOCAL_RELEASE LOCAL_VERSION LOCAL_MACHINE REMOTE_SYSNAME
REMOTE_SYSTEM_MODEL REMOTE_RELEASE REMOTE_VERSION REMOTE_MACHINE LOCAL_INTERFACE_NAME LOCAL_INTERFACE_VENDOR
LOCAL_INTERFACE_DEVICE LOCAL_INTERFACE_SUBVENDOR LOCAL_INTERFACE_SUBDEVICE LOCAL_DRIVER_NAME LOCAL_DRIVER_VERSION
LOCAL_DRIVER_FIRMWARE LOCAL_DRIVER_BUS LOCAL_INTERFACE_SLOT REMOTE_INTERFACE_NAME REMOTE_INTERFACE_VENDOR
REMOTE_INTERFACE_DEVICE REMOTE_INTERFACE_SUBVENDOR REMOTE_INTERFACE_SUBDEVICE REMOTE_DRIVER_NAME
REMOTE_DRIVER_VERSION REMOTE_DRIVER_FIRMWARE REMOTE_DRIVER_BUS REMOTE_INTERFACE_SLOT LOCAL_INTERVAL_USECS
LOCAL_INTERVAL_BURST REMOTE_INTERVAL_USECS REMOTE_INTERVAL_BURST LOCAL_SECURITY_TYPE_ID LOCAL_SECURITY_TYPE
LOCAL_SECURITY_ENABLED_NUM LOCAL_SECURITY_ENABLED LOCAL_SECURITY_SPECIFIC REMOTE_SECURITY_TYPE_ID
REMOTE_SECURITY_TYPE REMOTE_SECURITY_ENABLED_NUM REMOTE_SECURITY_ENABLED REMOTE_SECURITY_SPECIFIC RESULT_BRAND
UUID MIN_LATENCY MAX_LATENCY P50_LATENCY P90_LATENCY P99_LATENCY MEAN_LATENCY STDDEV_LATENCY LOCAL_SOCKET_PRIO
REMOTE_SOCKET_PRIO LOCAL_SOCKET_TOS REMOTE_SOCKET_TOS LOCAL_CONG_CONTROL REMOTE_CONG_CONTROL LOCAL_FILL_FILE
REMOTE_FILL_FILE COMMAND_LINE OUTPUT_END
""".split())
# The spec's `-o JSON,...`: meshperf always stores every selector as JSON; accepted and dropped.
OUTPUT_MODES = ("JSON",)

CLIENT_PARAMS = {
    "duration_s": (int, float),
    "test": str,
    "udp": bool,
    "length": (str, type(None)),
    "request_size": (int, type(None)),
    "response_size": (int, type(None)),
    "selectors": list,
    "args": list,
    "test_args": list,
}

# Native options: what each one is to meshperf.  Options not listed are test options, passed after `--`.
_OWNED = {
    "-H": "meshperf sets the target host (the destination's data address)",
    "-L": "meshperf binds both ends to their node's data address",
    "-p": "meshperf starts netserver on a port its agent allocates",
    "-P": "meshperf owns the banner (-P 0) and the ports",
    "-k": None, "-o": None, "-O": None,    # mapped to selectors (below), listed so -k is not a test option
    "-f": "meshperf reads THROUGHPUT_UNITS and reports bit/s itself",
    "-v": "meshperf parses netperf's output: verbosity changes it",
    "-V": "meshperf probes netperf's version itself",
    "-h": "not a measurement",
    "-N": "meshperf needs netperf's control connection",
}
_GLOBAL_OWNED = {
    "-D": "demo mode (interim results) changes the output meshperf parses",
    "-d": "netperf's debug output would mix with its results; -d after -- (or test=) is the direction",
    "-s": "meshperf schedules measurements itself",
}
_GLOBAL_PASS = frozenset(("-i", "-I", "-B", "-a", "-A", "-n", "-j", "-4", "-6", "-F", "-w", "-b"))
_SIZE = re.compile(r"^[0-9]{1,9}[KMG]?$")
_SELECTOR = re.compile(r"^[A-Z0-9_]{1,40}$")


def native_params(args: Sequence[str]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Native netperf arguments -> ({meshperf parameter: value}, global args, test args); ArgError names an
    argument meshperf cannot accept.  ``-l``, ``-d``, ``-T tcp|udp``, ``-r``, ``-m`` and ``-o/-O/-k`` map
    onto meshperf's parameters; ``-t`` must be omni; ``-c``/``-C`` are always on."""
    mapped, global_args, test_args = {}, [], []
    for option, value, section in options(as_list(args)):
        # -T tcp|udp is the test's protocol; -T N,M (CPU binding) is global.
        test = section == 1 or (section is None and option not in _GLOBAL_PASS and
                                not (option == "-T" and (value or "").lower() not in ("tcp", "udp")))
        if section == 0 and option in _GLOBAL_OWNED:
            raise ArgError(f"{option}: {_GLOBAL_OWNED[option]}")
        if option in _OWNED and _OWNED[option]:
            raise ArgError(f"{option}: {_OWNED[option]}")
        if option in ("-c", "-C"):
            continue  # meshperf always asks for both ends' CPU utilisation
        if option in ("-o", "-O", "-k"):
            mapped["selectors"] = mapped.get("selectors", []) + selector_list(_value(option, value))
        elif option == "-l" and section != 1:
            seconds = _value(option, value)
            if not re.match(r"^[0-9]{1,5}$", seconds) or int(seconds) == 0:
                raise ArgError(f"-l {seconds}: give whole seconds above 0 (meshperf bounds every test in time; a byte "
                               "or transaction count is not supported)")
            mapped["duration_s"] = int(seconds)
        elif option == "-t" and section != 1:
            if _value(option, value).lower() != "omni":
                raise ArgError(f"-t {value}: meshperf runs netperf's OMNI test; choose send, recv or rr with -d "
                               "(or test=)")
        elif option == "-d" and section != 0:
            direction = _value(option, value).lower()
            if direction not in TESTS:
                raise ArgError(f"-d {value}: give one of {', '.join(TESTS)}")
            mapped["test"] = direction
        elif option == "-T" and (value or "").lower() in ("tcp", "udp"):
            mapped["udp"] = value.lower() == "udp"
        elif option == "-r" and test:
            request, _, response = _value(option, value).partition(",")
            mapped["request_size"] = _bytes(option, request)
            mapped["response_size"] = _bytes(option, response or request)
        elif option == "-m" and test:
            mapped["length"] = _value(option, value)
        elif test:
            test_args.append((option, value))
        else:
            global_args.append((option, value))
    return mapped, flatten(global_args), flatten(test_args)


def _value(option, value):
    if value is None:
        raise ArgError(f"{option} needs a value")
    return value


def _bytes(option, text):
    if not re.match(r"^[0-9]{1,9}$", text) or int(text) == 0:
        raise ArgError(f"{option} {text}: give sizes in bytes, e.g. -r 1,1 or -r 64,1024")
    return int(text)


def selector_list(text: str) -> list[str]:
    """'THROUGHPUT,p99_latency' -> ['THROUGHPUT', 'P99_LATENCY']; an unknown selector is an ArgError."""
    out = []
    for word in (w.strip().upper() for w in re.split(r"[,\s]+", str(text)) if w.strip()):
        if word in OUTPUT_MODES:
            continue
        if not _SELECTOR.match(word) or word not in KNOWN_SELECTORS:
            close = difflib.get_close_matches(word, sorted(KNOWN_SELECTORS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (netperf 2.7 lists them with -- -k '?')"
            raise ArgError(f"unknown netperf output selector {word!r}{hint}")
        out.append(word)
    return out


def _check_params(params):
    unknown = set(params) - set(CLIENT_PARAMS)
    if unknown:
        raise ValueError(f"unknown netperf parameters: {', '.join(sorted(unknown))}")
    for key, value in params.items():
        if isinstance(value, bool) and CLIENT_PARAMS[key] is not bool:
            raise ValueError(f"netperf parameter {key} must not be a boolean")
        if not isinstance(value, CLIENT_PARAMS[key]):
            raise ValueError(f"netperf parameter {key} has the wrong type ({type(value).__name__})")
    if not 0 < params.get("duration_s", 10) <= 86400:
        raise ValueError("duration_s must be in (0, 86400]")
    if params.get("test", "send") not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}")
    if params.get("length") is not None and not _SIZE.match(params["length"]):
        raise ValueError("length must look like 1400 or 64K")
    for key in ("request_size", "response_size"):
        if params.get(key) is not None and not 1 <= params[key] <= 1 << 30:
            raise ValueError(f"{key} must be 1 byte to 1 GiB")
    selector_list(",".join(params.get("selectors", [])))
    # The agent checks passed-through arguments again: a caller other than meshperf's controller
    # must not slip a second -H past it.
    _, global_args, test_args = native_params(params.get("args", []) + ["--"] + params.get("test_args", []))
    if global_args != params.get("args", []) or test_args != params.get("test_args", []):
        raise ValueError("args and test_args must be plain pass-through arguments")


def selectors(params: Mapping[str, Any]) -> list[str]:
    chosen = list(DEFAULT_SELECTORS)
    if params.get("udp") and params.get("test", "send") == "send":
        chosen += UDP_SEND_SELECTORS
    for name in params.get("selectors", []):
        if name not in chosen:
            chosen.append(name)
    return chosen


def server_argv(binary: str, port: int, bind: str | None = None) -> list[str]:
    """One netserver for every measurement to this node: -D keeps it in the foreground (supervised)."""
    argv = [binary, "-D", "-p", str(int(port))]
    if bind:
        argv += ["-L", bind]
    return argv


def client_argv(binary: str, target: str, port: int, params: Mapping[str, Any], bind: str | None = None) -> list[str]:
    """netperf OMNI against the node's netserver; ``params`` uses CLIENT_PARAMS keys."""
    _check_params(params)
    argv = [binary, "-H", target, "-p", str(int(port))]
    if bind:
        argv += ["-L", bind]
    argv += ["-t", "omni", "-l", str(int(params.get("duration_s", 10))), "-P", "0", "-c", "-C"]
    argv += params.get("args", [])
    argv += ["--", "-d", params.get("test", "send"), "-T", "udp" if params.get("udp") else "tcp"]
    if params.get("request_size") is not None:
        argv += ["-r", f"{params['request_size']},{params.get('response_size') or params['request_size']}"]
    if params.get("length"):
        argv += ["-m", params["length"]]
    argv += params.get("test_args", [])
    argv += ["-k", ",".join(selectors(params))]
    return argv


def expected_runtime_s(params: Mapping[str, Any]) -> float:
    """The duration, times the most iterations a confidence interval (-i max,min) may take."""
    iterations, global_args = 1, params.get("args", [])
    for option, value in zip(global_args, global_args[1:]):
        most = re.match(r"^[0-9]{1,2}", value) if option == "-i" else None
        if most:
            iterations = max(1, int(most.group(0)))
    return float(params.get("duration_s", 10)) * iterations


def version_argv(binary: str) -> list[str]:
    return [binary, "-V"]


# agent/boot.py keeps a copy (it runs without the package); test_boot holds the two equal.
VERSION_PATTERN = r"[Nn]etperf version\s+(\d+\.\d+(?:\.\d+)?\S*)"


def parse_version(text: str | None) -> str | None:
    """'Netperf version 2.7.0' -> '2.7.0'."""
    match = re.search(VERSION_PATTERN, text or "")
    return match.group(1) if match else None


def load_output(stdout: str | None) -> dict[str, Any]:
    """netperf's ``-k`` output as {selector: text}; ToolFailure when it holds no result."""
    values = {}
    for line in (stdout or "").splitlines():
        name, sep, value = line.partition("=")
        if sep and _SELECTOR.match(name.strip()):
            values[name.strip()] = value.strip().strip('"')
    if "THROUGHPUT" not in values:
        text = (stdout or "").strip()
        raise ToolFailure(f"netperf printed no result{': ' + text.splitlines()[-1][:300] if text else ''}")
    return {"selectors": values, "stdout": stdout}


_UNITS_BPS = {"bits/s": 1.0, "10^3bits/s": 1e3, "10^6bits/s": 1e6, "10^9bits/s": 1e9,
              "bytes/s": 8.0, "10^3bytes/s": 8e3, "10^6bytes/s": 8e6, "10^9bytes/s": 8e9,
              "2^10bytes/s": 8.0 * 1024, "2^20bytes/s": 8.0 * 1024 ** 2, "2^30bytes/s": 8.0 * 1024 ** 3}
_LATENCY = {"MEAN_LATENCY": "latency_mean_us", "P50_LATENCY": "latency_p50_us", "P90_LATENCY": "latency_p90_us",
            "P99_LATENCY": "latency_p99_us"}


def _number(values, name):
    try:
        return float(values[name])
    except (KeyError, ValueError):
        return None


def metrics_from_json(data: dict[str, Any]) -> dict[str, float]:
    """Metric-name -> value (names per pytest_meshperf.spec.metrics) from load_output's result.

    A send test's THROUGHPUT is the receiver's figure (netperf reports what arrived) in THROUGHPUT_UNITS;
    an rr test's THROUGHPUT is its transaction rate (Trans/s), so it gives no bit rate, but transaction
    rate and round-trip latencies.  A UDP send counts datagrams sent and received: packets, lost_packets,
    lost_percent.  CPU utilisation netperf could not measure (-1) is left out."""
    values = data["selectors"]
    metrics = {}
    units = values.get("THROUGHPUT_UNITS", "")
    throughput = _number(values, "THROUGHPUT")
    if throughput is not None and units in _UNITS_BPS:
        metrics["throughput_bps"] = throughput * _UNITS_BPS[units]
    elif throughput is not None and units != "Trans/s":
        raise ToolFailure(f"netperf reported THROUGHPUT in units meshperf does not know: {units!r}")
    if units == "Trans/s":
        # Only a request/response test has transactions and round-trip latencies: for send, netperf
        # prints TRANSACTION_RATE=1 and the time of one send call as "latency" (kept in raw, not metrics).
        rate = _number(values, "TRANSACTION_RATE")
        if rate is not None:
            metrics["transaction_rate"] = rate
        for name, metric in _LATENCY.items():
            value = _number(values, name)
            if value is not None and value >= 0:
                metrics[metric] = value
    sent, received = _number(values, "LOCAL_SEND_CALLS"), _number(values, "REMOTE_RECV_CALLS")
    if values.get("PROTOCOL") == "UDP" and values.get("DIRECTION") == "Send" and sent:
        # One send call is one datagram; what the receiver did not read was lost.
        metrics["packets"] = sent
        metrics["lost_packets"] = max(0.0, sent - (received or 0.0))
        metrics["lost_percent"] = 100.0 * metrics["lost_packets"] / sent
    for name, metric in (("LOCAL_CPU_UTIL", "cpu_local_percent"), ("REMOTE_CPU_UTIL", "cpu_remote_percent")):
        value = _number(values, name)
        if value is not None and value >= 0:
            metrics[metric] = value
    return metrics


def client_ports(data: dict[str, Any]) -> list[int]:
    port = _number(data["selectors"], "SOURCE_PORT")
    return [int(port)] if port else []


def tool_version(data: dict[str, Any]) -> str | None:
    return None  # netperf prints no version with its results; the agent's probe (agent.info) has it
