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
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_meshperf.tools.args import NUMBER, SIZE, ArgError, Opt, as_list, flatten, parse, table
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

# Native options (netperf 2.7's, `netperf -h` and `netperf -t omni -- -h`), for before its `--` (global) and
# after it (the OMNI test's): what meshperf passes on, each with its value's pattern (tools/args.py) ...
_PAIR = r"[0-9]{0,9}(,[0-9]{0,9})?"
_SIZES = SIZE + r"(," + SIZE + r")?|," + SIZE
_DURATION = Opt(("-l",), r"[0-9]{1,5}", "whole seconds above 0 (meshperf bounds every test in time; a byte or "
                "transaction count is not supported)")
_TEST_NAME = Opt(("-t",), r"[A-Za-z_]{1,16}", "omni")
_CPU = Opt(("-c", "-C"), NUMBER, "a CPU rate", optional=True)
_SELECTORS = Opt(("-o", "-O", "-k"), r"[A-Za-z0-9_, ]{1,2000}", "output selectors such as THROUGHPUT,P99_LATENCY")
_CPU_BIND = Opt(("-T",), r"[0-9]{0,4}(,[0-9]{0,4})?", "the local,remote CPUs to bind to (0,1)")
_DIRECTION = Opt(("-d",), r"[A-Za-z]{1,8}", "send, recv or rr")
_PROTOCOL = Opt(("-T",), r"(?i:tcp|udp)", "tcp or udp")
_REQUEST = Opt(("-r",), r"[0-9]{1,9}(,[0-9]{0,9})?", "request,response sizes in bytes (-r 64,1024)")
_SEND_SIZE = Opt(("-m",), r"[0-9]{1,9}[KMG]?", "a send size such as 1400 or 64K")
_GLOBAL = table([
    _DURATION, _TEST_NAME, _CPU, _SELECTORS, _CPU_BIND,
    Opt(("-a", "-A"), _PAIR, "send,recv buffer alignments"),
    Opt(("-B",), r"[A-Za-z0-9_.:+=@-]{1,32}", "a brand: letters, digits and _.:+=@-"),
    Opt(("-i",), r"[0-9]{1,2}(,[0-9]{1,2})?", "max,min iterations (-i 10,3)"),
    Opt(("-I",), r"(95|99)(,[0-9]{1,2})?", "a confidence level, 95 or 99, and interval (-I 99,5)"),
    Opt(("-j",)), Opt(("-r",)), Opt(("-S",)), Opt(("-4",)), Opt(("-6",)),
    Opt(("-n",), r"[0-9]{1,4}", "a number of CPUs"),
    Opt(("-W",), _PAIR, "send,recv buffer counts"),
    Opt(("-y",), r"-?[0-9]{1,2}(,-?[0-9]{1,2})?", "local,remote socket priorities"),
    Opt(("-Y",), r"(0x)?[0-9a-fA-F]{1,2}(,(0x)?[0-9a-fA-F]{1,2})?", "local,remote IP_TOS in hexadecimal"),
])
_TEST = table([
    _DIRECTION, _PROTOCOL, _REQUEST, _SEND_SIZE, _SELECTORS,
    Opt(("-b",), r"[0-9]{1,6}", "a number of requests"),
    Opt(("-c",)), Opt(("-C",)), Opt(("-D",)), Opt(("-n",)), Opt(("-N",)), Opt(("-4",)), Opt(("-6",)),
    Opt(("-K",), r"[a-z0-9_]{1,32}(,[a-z0-9_]{1,32})?", "local,remote congestion control such as cubic,bbr"),
    Opt(("-M",), r"[0-9]{1,9}[KMG]?(,[0-9]{0,9}[KMG]?)?", "local,remote receive sizes"),
    Opt(("-R",), r"[01]", "0 or 1"),
    Opt(("-s", "-S"), _SIZES, "send,recv socket buffer sizes such as 128K"),
    Opt(("-t",), r"(?i:stream|dgram|seqpacket|rdm|sock_stream|sock_dgram)", "a socket type such as stream"),
    Opt(("-u",), r"[0-9a-fA-F-]{8,36}", "a UUID"),
])
# ... and what it refuses, with why: what it owns, and anything that names a file on a node.
_TARGET = "meshperf sets the target host (the destination's data address)"
_BIND = "meshperf binds both ends to their node's data address"
_REFUSED_GLOBAL = {
    "-H": _TARGET, "-L": _BIND,
    "-p": "meshperf starts netserver on a port its agent allocates",
    "-P": "meshperf owns the banner (-P 0) and the ports",
    "-f": "meshperf reads THROUGHPUT_UNITS and reports bit/s itself",
    "-v": "meshperf parses netperf's output: verbosity changes it",
    "-V": "meshperf probes netperf's version itself",
    "-h": "not a measurement",
    "-N": "meshperf needs netperf's control connection",
    "-D": "demo mode (interim results) changes the output meshperf parses",
    "-d": "netperf's debug output would mix with its results; -d after -- (or test=) is the direction",
    "-s": "meshperf schedules measurements itself",
    "-F": "names a file on the node (netperf would fill its buffers from it)",
    "-Z": "meshperf sets netserver's passphrase itself",
    "-w": "not an option of netperf 2.7 (intervals need a netperf built with them)",
    "-b": "not an option of netperf 2.7 (bursts need a netperf built with intervals)",
}
_REFUSED_TEST = {
    "-H": _TARGET + ", data connection included",
    "-L": _BIND + ", data connection included",
    "-P": "meshperf leaves the data ports to the kernel (ports are recorded)",
    "-p": "meshperf leaves the data ports to the kernel (ports are recorded)",
    "-h": "not a measurement",
}
_SIZE = re.compile(r"^[0-9]{1,9}[KMG]?$")
_SELECTOR = re.compile(r"^[A-Z0-9_]{1,40}$")


def native_params(args: Sequence[str]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Native netperf arguments -> ({meshperf parameter: value}, global args, test args); ArgError names an
    argument meshperf does not pass on.  ``-l``, ``-d``, ``-T tcp|udp``, ``-r``, ``-m`` and ``-o/-O/-k`` map
    onto meshperf's parameters; ``-t`` must be omni; ``-c``/``-C`` are always on."""
    mapped, global_args, test_args = {}, [], []
    # Without a '--', these read as global options first (-c/-C the CPU utilisation, -T N,M the CPU binding);
    # everything else as the test's.
    for arg in parse(as_list(args), NAME, [_GLOBAL, _TEST], [_REFUSED_GLOBAL, _REFUSED_TEST],
                     global_first=("-c", "-C", "-n", "-4", "-6", "-T")):
        option, value, opt = arg.given, arg.value, arg.opt
        if opt is _CPU:
            continue  # meshperf always asks for both ends' CPU utilisation
        if opt is _SELECTORS:
            mapped["selectors"] = mapped.get("selectors", []) + selector_list(value)
        elif opt is _DURATION:
            if int(value) == 0:
                raise ArgError(f"-l {value}: give {opt.what}")
            mapped["duration_s"] = int(value)
        elif opt is _TEST_NAME:
            if value.lower() != "omni":
                raise ArgError(f"-t {value}: meshperf runs netperf's OMNI test; choose send, recv or rr with -d "
                               "(or test=)")
        elif opt is _DIRECTION:
            if value.lower() not in TESTS:
                raise ArgError(f"-d {value}: give one of {', '.join(TESTS)}")
            mapped["test"] = value.lower()
        elif opt is _PROTOCOL:
            mapped["udp"] = value.lower() == "udp"
        elif opt is _REQUEST:
            request, _, response = value.partition(",")
            mapped["request_size"] = _bytes(option, request)
            mapped["response_size"] = _bytes(option, response or request)
        elif opt is _SEND_SIZE:
            mapped["length"] = value
        elif arg.part == 1:
            test_args.append(arg)
        else:
            global_args.append(arg)
    return mapped, flatten(global_args), flatten(test_args)


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


def passphrase(secret: str, node: str) -> str:
    """The passphrase of ``node``'s netserver in this run (``-Z``), from ``secret``: the node's key (the agent's;
    protocol.node_key of the run's secret), so it differs per node and per run and gives neither key nor
    secret away.  netserver serves nothing (not a test, not a fill file: ``-F``) to a client without it."""
    return hmac.new(secret.encode(), b"netserver\0" + node.encode(), hashlib.sha256).hexdigest()[:32]


PASSPHRASE = re.compile(r"^[0-9a-f]{32}$")


def server_argv(binary: str, port: int, bind: str | None = None, passphrase: str | None = None) -> list[str]:
    """One netserver for every measurement to this node: -D keeps it in the foreground (supervised); -Z its
    passphrase (on its command line: netperf 2.7 takes it nowhere else; docs/deployment.md)."""
    argv = [binary, "-D", "-p", str(int(port))]
    if bind:
        argv += ["-L", bind]
    if passphrase is not None:
        argv += ["-Z", _checked_passphrase(passphrase)]
    return argv


def _checked_passphrase(text):
    if not isinstance(text, str) or not PASSPHRASE.match(text):
        raise ValueError("passphrase must be 32 lowercase hexadecimal digits")
    return text


def client_argv(binary: str, target: str, port: int, params: Mapping[str, Any], bind: str | None = None,
                passphrase: str | None = None) -> list[str]:
    """netperf OMNI against the node's netserver; ``params`` uses CLIENT_PARAMS keys; ``passphrase``: the
    destination netserver's."""
    _check_params(params)
    argv = [binary, "-H", target, "-p", str(int(port))]
    if bind:
        argv += ["-L", bind]
    if passphrase is not None:
        argv += ["-Z", _checked_passphrase(passphrase)]
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
