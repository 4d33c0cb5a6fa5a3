"""The checks of one host field (name, address, role, ports, labels, ...): each value's problem and its fix."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any, Callable, Optional

from pytest_meshperf.vocabulary import HOST_KEY_CHECKS
from pytest_meshperf.yamlfile import kind_of, short

ROLES = ("server", "client", "both")
SENDING_ROLES = ("client", "both")
RECEIVING_ROLES = ("server", "both")

#: Keys a host (or ``defaults:``) may set, in the order they are validated.
#: Each one is a :class:`Node` field and has a checker in ``VALUE_CHECKS``
#: (or a dedicated parser: ``ssh_key``, ``labels``).
HOST_KEYS = (
    "name",
    "address",
    "role",
    "data_address",
    "ssh_user",
    "ssh_port",
    "ssh_key",
    "ssh_jump",
    "host_key_check",
    "python",
    "iperf3",
    "netperf",
    "netserver",
    "max_send",
    "max_recv",
    "max_processes",
    "ports",
    "labels",
)
#: Keys every host must give itself (not allowed in ``defaults:``).
REQUIRED_HOST_KEYS = ("name", "address")
#: Keys for which an explicit ``null`` means "not set".
OPTIONAL_HOST_KEYS = ("data_address", "ssh_user", "ssh_port", "ssh_key", "ssh_jump", "host_key_check", "python",
                      "iperf3", "netperf", "netserver", "max_send", "max_recv", "max_processes", "ports",
                      "labels")
#: Top-level keys of a hosts.yaml file.
TOP_KEYS = ("defaults", "hosts")

_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]")
_ADDRESS_CHARS = re.compile(r"[A-Za-z0-9.:_\[\]%-]")
_USER_CHARS = _NAME_CHARS
_JUMP_CHARS = re.compile(r"[A-Za-z0-9.:_@\[\]%-]")
_PATH_CHARS = re.compile(r"[A-Za-z0-9._+/-]")
# (problem, fix) or None
_Problem = Optional[tuple[str, str]]


def _char(c: str) -> str:
    if c == " ":
        return "a space"
    if c == "\t":
        return "a tab"
    return repr(c)


def _bad_char(value: str, allowed: re.Pattern[str]) -> str | None:
    for c in value:
        if not allowed.fullmatch(c):
            return c
    return None


def suggest(word: str, choices: Iterable[str], what: str = "valid keys") -> str:
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"{what} are: {', '.join(choices)}"


def _check_string(value: Any, key: str, example: str) -> _Problem:
    if value is None or value == "":
        return "is empty", f"give a value, e.g. {key}: {example}"
    if isinstance(value, (bool, int, float)):
        return (
            f"expected a string, got {kind_of(value)}",
            f"quote the value, e.g. {key}: '{value}'",
        )
    if not isinstance(value, str):
        return (
            f"expected a string, got {kind_of(value)}",
            f"write a single value, e.g. {key}: {example}",
        )
    return None


def check_name(value: Any) -> _Problem:
    problem = _check_string(value, "name", "web1")
    if problem:
        if value is None or value == "":
            return problem[0], "give every host a unique name, e.g. name: web1"
        return problem
    bad = _bad_char(value, _NAME_CHARS)
    if bad is not None:
        return (
            f"{value!r} contains {_char(bad)}",
            "use only letters, digits, '.', '_' and '-' (names appear in test ids and file names)",
        )
    if not (value[0].isalnum() or value[0] == "_"):
        return (
            f"{value!r} starts with {value[0]!r}",
            "start the name with a letter, digit or '_'",
        )
    return None


def _check_address(value: Any) -> _Problem:
    fix = "give an IP address, DNS name or ssh_config alias"
    problem = _check_string(value, "address", "10.0.1.10")
    if problem:
        return problem[0], fix if value is None or value == "" else problem[1]
    bad = _bad_char(value, _ADDRESS_CHARS)
    if bad is not None:
        return (
            f"{value!r} contains {_char(bad)}",
            f"{fix} (letters, digits, '.', ':', '-', '_', '[', ']', '%' only)",
        )
    if value.startswith("-"):
        return f"{value!r} starts with '-'", fix
    return None


def address_problem(value: Any) -> _Problem:
    """(problem, fix) when ``value`` is not a usable address or ssh_config alias, else None (for matrix.py)."""
    return _check_address(value)


def _check_role(value: Any) -> _Problem:
    roles = ", ".join(ROLES)
    if value in ROLES:
        return None
    if not isinstance(value, str):
        return f"expected one of {roles}, got {kind_of(value)}", "write e.g. role: both"
    return f"{value!r} is not one of {roles}", suggest(value, ROLES, "valid roles")


def _check_user(value: Any) -> _Problem:
    problem = _check_string(value, "ssh_user", "root")
    if problem:
        return problem
    bad = _bad_char(value, _USER_CHARS)
    if bad is not None:
        return (
            f"{value!r} contains {_char(bad)}",
            "use only letters, digits, '.', '_' and '-'",
        )
    if value.startswith("-"):
        return f"{value!r} starts with '-'", "give a user name, e.g. ssh_user: root"
    return None


def _check_port(value: Any) -> _Problem:
    fix = "give a port number between 1 and 65535, e.g. ssh_port: 22"
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            return (
                f"{value!r} is a string, not an integer",
                "write the port without quotes, e.g. ssh_port: 22",
            )
        return f"expected an integer, got {kind_of(value)}", fix
    if not 1 <= value <= 65535:
        return f"{value} is outside 1..65535", fix
    return None


def _check_key_path(value: Any) -> _Problem:
    return _check_string(value, "ssh_key", "~/.ssh/id_rsa")


def check_label(key: Any, value: Any) -> _Problem:
    if not isinstance(key, str) or not key:
        return (
            f"label key {short(key)} is not a non-empty string",
            "use a word as key, e.g. zone: a",
        )
    if any(not c.isprintable() or c.isspace() for c in key):
        return (
            f"label key {key!r} contains whitespace or control characters",
            "use a single word as key",
        )
    if not isinstance(value, str):
        return (
            f"label {key!r} has {kind_of(value)} as value, not a string",
            "give a single value, e.g. zone: a",
        )
    if any(not c.isprintable() for c in value):
        return (
            f"label {key!r} value {value!r} contains control characters or newlines",
            "keep label values on one line",
        )
    return None


def _check_jump(value: Any) -> _Problem:
    fix = "give the jump host as [user@]host[:port] or the name of another host"
    problem = _check_string(value, "ssh_jump", "bastion.example.net")
    if problem:
        return problem
    bad = _bad_char(value, _JUMP_CHARS)
    if bad is not None:
        return f"{value!r} contains {_char(bad)}", fix
    if value.startswith("-"):
        return f"{value!r} starts with '-'", fix
    return None


def _check_host_key_check(value: Any) -> _Problem:
    if value in HOST_KEY_CHECKS or isinstance(value, bool):  # YAML's yes/off are booleans: True/False
        return None
    return (f"{short(value)} is not one of {', '.join(HOST_KEY_CHECKS)}",
            "write host_key_check: yes (verify), accept-new (add unknown keys) or off (no check, throwaway labs)")


def _check_limit(value: Any, key: str) -> _Problem:
    fix = f"give how many measurements the node may take part in at once, 1 to 64, e.g. {key}: 2"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {kind_of(value)}", fix
    if not 1 <= value <= 64:
        return f"{value} is outside 1..64", fix
    return None


def _check_max_processes(value: Any) -> _Problem:
    fix = "give how many tool processes the node may run at once, 1 to 4096, e.g. max_processes: 32"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {kind_of(value)}", fix
    if not 1 <= value <= 4096:
        return f"{value} is outside 1..4096", fix
    return None


_PORTS = re.compile(r"^([0-9]{1,5})-([0-9]{1,5})$")


def _check_ports(value: Any) -> _Problem:
    fix = "give the tool servers' port range as LOW-HIGH within 1024-65535, e.g. ports: 5201-5299"
    if not isinstance(value, str):
        return f"expected a range such as 5201-5299, got {kind_of(value)}", fix
    match = _PORTS.match(value)
    if not match:
        return f"{value!r} is not a LOW-HIGH port range", fix
    low, high = int(match.group(1)), int(match.group(2))
    if not 1024 <= low <= high <= 65535:
        return f"{value!r} is not an ascending range within 1024-65535", fix
    return None


def _check_program(value: Any) -> _Problem:
    fix = "give a program name or an absolute path on the node, e.g. iperf3: /usr/bin/iperf3"
    problem = _check_string(value, "iperf3", "/usr/bin/iperf3")
    if problem:
        return problem
    bad = _bad_char(value, _PATH_CHARS)
    if bad is not None:
        return f"{value!r} contains {_char(bad)}", fix
    if value.startswith("-") or not (value.startswith("/") or "/" not in value):
        return f"{value!r} is neither a program name nor an absolute path", fix
    return None


# field -> checker for the plain scalar fields (ssh_key and labels have their own parsers)
VALUE_CHECKS: dict[str, Callable[[Any], _Problem]] = {
    "name": check_name,
    "address": _check_address,
    "role": _check_role,
    "data_address": _check_address,
    "ssh_user": _check_user,
    "ssh_port": _check_port,
    "ssh_key": _check_key_path,
    "ssh_jump": _check_jump,
    "host_key_check": _check_host_key_check,
    "python": _check_program,
    "iperf3": _check_program,
    "netperf": _check_program,
    "netserver": _check_program,
    "max_send": lambda value: _check_limit(value, "max_send"),
    "max_recv": lambda value: _check_limit(value, "max_recv"),
    "max_processes": _check_max_processes,
    "ports": _check_ports,
}
assert set(VALUE_CHECKS) | {"labels"} == set(HOST_KEYS)
