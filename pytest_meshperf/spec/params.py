"""Measurement parameters: parsed from marks, profiles, options and measure() overrides.

User-facing keys (``duration=5``, ``bitrate="100Mbit/s"``) become one typed
``Params``; layers merge in increasing precedence: profile file, mark,
``measure(**overrides)``, command-line options (which override every test).
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_meshperf.errors import ParameterError, ThresholdError
from pytest_meshperf.spec.units import parse_quantity
from pytest_meshperf.tools import TOOLS, get_tool
from pytest_meshperf.tools.args import ArgError, as_list

_SIZE = re.compile(r"^[0-9]{1,12}[KMG]?$")


@dataclass(frozen=True)
class Params:
    tool: str = "iperf3"
    duration_s: int = 10
    parallel: int = 1
    reverse: bool = False
    bidir: bool = False
    udp: bool = False
    bitrate_bps: float | None = None
    omit_s: int = 0
    window: str | None = None
    length: str | None = None
    congestion: str | None = None
    zerocopy: bool = False
    connect_timeout_ms: int | None = None
    instances: Any = 1          # tool processes per pair, each pinned to its own core; or "auto"
    # netperf
    test: str = "send"          # OMNI direction: send, recv, rr
    request_size: int | None = None    # rr: bytes per request (netperf -r)
    response_size: int | None = None
    selectors: tuple[str, ...] = ()       # output selectors besides meshperf's own
    # native arguments passed through: before netperf's `--` (all of iperf3's), after it
    args: tuple[str, ...] = ()
    test_args: tuple[str, ...] = ()

    def tool_params(self) -> dict[str, Any]:
        """The canonical parameters the agent's tool module takes (per process): its own fields only."""
        accepted = get_tool(self.tool).CLIENT_PARAMS
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items() if key in accepted}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}


def _seconds(key, value, origin):
    return _quantity(key, value, origin, "time", "s")


def _quantity(key, value, origin, kind, canonical=None):
    if isinstance(value, bool):
        raise ParameterError(f"{origin}: {key}={value!r}: expected a number, not a boolean")
    try:
        number, _unit = parse_quantity(str(value), kind, canonical=canonical) if canonical else parse_quantity(str(value), kind)
    except ThresholdError as exc:
        raise ParameterError(f"{origin}: {key}={value!r}: {_short(exc)}")
    return number


def _short(exc):
    return str(exc).split(": ", 1)[-1]


def _bool(key, value, origin):
    if not isinstance(value, bool):
        raise ParameterError(f"{origin}: {key}={value!r}: expected true or false")
    return value


def _int(low, high):
    def parse(key, value, origin):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ParameterError(f"{origin}: {key}={value!r}: expected a whole number from {low} to {high}")
        return value
    return parse


def _size(key, value, origin):
    text = str(value)
    if not _SIZE.match(text):
        raise ParameterError(f"{origin}: {key}={value!r}: expected a size in bytes such as 131072 or 128K")
    return text


def _congestion(key, value, origin):
    if not isinstance(value, str) or not re.match(r"^[a-z0-9_]{1,32}$", value):
        raise ParameterError(f"{origin}: {key}={value!r}: expected a congestion algorithm name such as cubic or bbr")
    return value


def _tool(key, value, origin):
    if value not in TOOLS:
        raise ParameterError(f"{origin}: tool={value!r}: unknown tool; known tools: {', '.join(sorted(TOOLS))}")
    return value


def _whole_seconds(key, value, origin, low, high):
    # iperf3 3.12 reads -t and -O as whole seconds: "-t 0.5" would mean "run forever".
    seconds = _seconds(key, value, origin)
    if not float(seconds).is_integer() or not low <= seconds <= high:
        raise ParameterError(f"{origin}: {key}={value!r}: give whole seconds from {low} to {high} (iperf3 counts whole "
                             "seconds)")
    return int(seconds)


def _duration(key, value, origin):
    return _whole_seconds(key, value, origin, 1, 86400)


def _omit(key, value, origin):
    return _whole_seconds(key, value, origin, 0, 600)


def _bitrate(key, value, origin):
    return None if value is None else _quantity(key, value, origin, "rate")


MAX_INSTANCES = 64


def _instances(key, value, origin):
    if value == "auto":
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INSTANCES:
        raise ParameterError(f"{origin}: instances={value!r}: expected auto (sized from the cores free on both ends) "
                             f"or a whole number from 1 to {MAX_INSTANCES}")
    return value


def _connect_timeout(key, value, origin):
    return int(round(_seconds(key, value, origin) * 1000))


def _test(key, value, origin):
    tests = get_tool("netperf").TESTS
    if value not in tests:
        raise ParameterError(f"{origin}: test={value!r}: expected one of {', '.join(tests)} (netperf OMNI direction; "
                             "rr is request/response)")
    return value


def _bytes(key, value, origin):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 30:
        raise ParameterError(f"{origin}: {key}={value!r}: expected a size in bytes from 1 to {1 << 30}")
    return value


def _selectors(key, value, origin):
    text = value if isinstance(value, str) else ",".join(value) if isinstance(value, (list, tuple)) and \
        all(isinstance(v, str) for v in value) else None
    if text is None:
        raise ParameterError(f"{origin}: selectors={value!r}: expected netperf output selectors such as 'P99_LATENCY,"
                             "THROUGHPUT_CONFID' or a list of them")
    try:
        return tuple(get_tool("netperf").selector_list(text))
    except ArgError as exc:
        raise ParameterError(f"{origin}: selectors: {exc}")


def _args(key, value, origin):
    try:
        where = "--mesh-tool-args" if origin == GLOBAL_ORIGIN else origin
        return (where, tuple(as_list(value)))   # interpreted by merge_params, once the tool is known
    except ArgError as exc:
        raise ParameterError(f"{origin}: {key}={value!r}: {exc}")


# user key -> (Params field, parser)
KEYS = {
    "tool": ("tool", _tool),
    "duration": ("duration_s", _duration),
    "parallel": ("parallel", _int(1, 128)),
    "reverse": ("reverse", _bool),
    "bidir": ("bidir", _bool),
    "udp": ("udp", _bool),
    "bitrate": ("bitrate_bps", _bitrate),
    "omit": ("omit_s", _omit),
    "window": ("window", _size),
    "length": ("length", _size),
    "congestion": ("congestion", _congestion),
    "zerocopy": ("zerocopy", _bool),
    "connect_timeout": ("connect_timeout_ms", _connect_timeout),
    "instances": ("instances", _instances),
    "test": ("test", _test),
    "request_size": ("request_size", _bytes),
    "response_size": ("response_size", _bytes),
    "selectors": ("selectors", _selectors),
    "args": ("args", _args),
}
_MESHPERF_FIELDS = ("tool", "instances", "args", "test_args")   # not the tool's, apply to every tool
GLOBAL_ORIGIN = "command line"   # parse_params's origin for the command line's layer (applies everywhere)


class Layer(dict):
    """One layer's parsed parameters, and where they came from (for messages): the layer's origin, and
    per field where it differs (a profile's fields each have their file:line)."""

    def __init__(self, origin: str = "") -> None:
        super().__init__()
        self.origin = origin
        self.origins = {}
        # Applies to every test of the run (the command line, --mesh-profile): fields a test's tool
        # does not take are left out for that test instead of being an error.
        self.everywhere = origin == GLOBAL_ORIGIN

    def for_every_test(self) -> Layer:
        """A copy that applies to every test (profiles are cached: the original stays as it is)."""
        copy = Layer(self.origin)
        copy.add(self)
        copy.everywhere = True
        return copy

    def add(self, other: Mapping[str, Any]) -> None:
        """Take ``other``'s fields (a later line of the same profile), with their origins."""
        for field, value in other.items():
            self[field] = value
            self.origins[field] = getattr(other, "origins", {}).get(field, getattr(other, "origin", ""))

    def origin_of(self, field: str) -> str:
        return self.origins.get(field, self.origin)


def parse_params(values: Mapping[str, Any], origin: str) -> Layer:
    """User keys -> {Params field: canonical value}; unknown keys are a ParameterError with a suggestion."""
    parsed = Layer(origin)
    for key, value in values.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known parameters: {', '.join(sorted(KEYS))}"
            raise ParameterError(f"{origin}: unknown parameter {key!r}; {hint}")
        field, parser = KEYS[key]
        parsed[field] = parser(key, value, origin)
        parsed.origins[field] = origin
    return parsed


def merge_params(*layers: Mapping[str, Any]) -> Params:
    """Parsed layers (from parse_params), lowest precedence first.

    Native arguments (``args``) are read by the tool the layers choose: what maps onto meshperf's
    parameters (netperf ``-l``, ``-d``; iperf3 ``-t``) takes that layer's place, the rest is passed
    through, and an argument meshperf owns is a ParameterError naming it.  A parameter the tool does
    not take is an error too, unless it came from the command line (which applies to every test)."""
    tool = Params.tool
    for layer in layers:
        tool = layer.get("tool", tool)
    module = get_tool(tool)
    taken = set(_MESHPERF_FIELDS) | set(module.CLIENT_PARAMS)   # the fields this test's tool takes
    merged, passed, test_passed = {}, [], []
    for layer in layers:
        origin, everywhere = getattr(layer, "origin", ""), getattr(layer, "everywhere", False)
        for field, value in layer.items():
            if field in taken or everywhere:
                continue
            key = next(k for k, (f, _) in KEYS.items() if f == field)
            users = sorted(name for name, other in TOOLS.items() if field in other.CLIENT_PARAMS)
            where = layer.origin_of(field) if isinstance(layer, Layer) else origin
            raise ParameterError(f"{where}: {key}={value!r} is a parameter of {' and '.join(users) or 'no tool'} only; "
                                 f"this test measures with {tool}")
        merged.update({f: v for f, v in layer.items() if f != "args" and f in taken})
        if "args" in layer:
            where, tokens = layer["args"]
            try:
                mapped, global_args, test_args = module.native_params(list(tokens))
            except ArgError as exc:
                raise ParameterError(f"{where}: {tool} args {' '.join(tokens)!r}: {exc}")
            selectors = mapped.pop("selectors", [])
            merged.update(mapped)
            if selectors:
                merged["selectors"] = tuple(merged.get("selectors", ())) + tuple(
                    s for s in selectors if s not in merged.get("selectors", ()))
            passed += global_args
            test_passed += test_args
    merged["args"], merged["test_args"] = tuple(passed), tuple(test_passed)
    params = Params(**merged)
    if params.reverse and params.bidir:
        raise ParameterError("reverse and bidir exclude each other: choose one")
    return params
