"""Native tool arguments (``args=["-d", "rr"]``, ``--mesh-tool-args``): split into options with their values.

Each tool module decides what an option means (mapped onto meshperf's parameters, passed through, or
refused because meshperf owns it); this module only finds the options.  An option takes the next token
as its value unless that token is itself an option (starts with ``-`` and is not a negative number).
Short options must stand alone: ``-c10.0.0.1`` or a bundle such as ``-RZ`` would hide an option meshperf
owns from the tool module's check, so they are refused with the separate-word spelling to use.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

MAX_ARGS = 64
_NEGATIVE = re.compile(r"^-[0-9]")


class ArgError(ValueError):
    """A native argument meshperf cannot accept; the message names it and says why."""


def as_list(value: str | Sequence[Any] | None) -> list[str]:
    """A mark's ``args="-d rr -l 5"`` (split like a shell, never run by one) or ``args=["-d", "rr"]``."""
    if isinstance(value, str):
        try:
            tokens = shlex.split(value)
        except ValueError as exc:
            raise ArgError(f"cannot split {value!r}: {exc}")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        tokens = list(value)
    else:
        raise ArgError(f"expected a string such as '-d rr -l 5' or a list of strings, not {value!r}")
    if len(tokens) > MAX_ARGS:
        raise ArgError(f"{len(tokens)} arguments; at most {MAX_ARGS}")
    return tokens


def is_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NEGATIVE.match(token)


def options(tokens: Sequence[str]) -> list[tuple[str, str | None, int | None]]:
    """[(option, value or None, section)]: section is 0 before a literal ``--`` and 1 after it (or None
    when there is none).  ``--opt=value`` is split.  A stray value with no option is an ArgError."""
    out, section, i = [], None, 0
    tokens = list(tokens)
    if "--" in tokens:
        section = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            section, i = 1, i + 1
            continue
        if not is_option(token):
            raise ArgError(f"{token!r}: a value without an option before it")
        if not token.startswith("--") and len(token) > 2:
            raise ArgError(f"{token}: write a short option and its value (or several short options) as separate words, "
                           f"e.g. '{token[:2]} {token[2:]}', so meshperf can check each")
        value = None
        if token.startswith("--") and "=" in token:
            token, value = token.split("=", 1)
        elif i + 1 < len(tokens) and tokens[i + 1] != "--" and not is_option(tokens[i + 1]):
            value, i = tokens[i + 1], i + 1
        out.append((token, value, section))
        i += 1
    return out


def flatten(pairs: Iterable[tuple[str, str | None]]) -> list[str]:
    argv = []
    for option, value in pairs:
        argv.append(option)
        if value is not None:
            argv.append(value)
    return argv
