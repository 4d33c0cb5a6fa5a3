"""Native tool arguments (``args=["-d", "rr"]``, ``--mesh-tool-args``): checked against an allow-list.

Each tool module lists the options meshperf passes on (``Opt``: every spelling, whether it takes a value and
what the value must look like) and the ones it refuses with why (``refused``); ``parse`` is the one parser
the controller and the agent both run (the agent re-checks what reaches a command line).  What it takes
care of, because the tools' own parsers (getopt) would read more into an argument than a looser check sees:

- full option names only: iperf3 takes any unambiguous prefix (``--cli`` for ``--client``), so a name that
  is not listed is refused, and a prefix of a listed one is named as such;
- a value is the next word only when the option takes one, and must match the option's pattern: a word
  like ``-4c127.0.0.9`` is never a value by looking like a negative number (getopt reads ``-4 -c ...``);
- short options stand alone: ``-c10.0.0.1`` or a bundle such as ``-RZ`` would hide an option meshperf owns,
  so they are refused with the separate-word spelling to use;
- what is passed on is written back canonically: ``--name=value`` for long options, ``-x value`` for short.
"""
from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_ARGS = 64


class ArgError(ValueError):
    """A native argument meshperf cannot accept; the message names it and says why."""


@dataclass(frozen=True)
class Opt:
    """One option meshperf passes on: its spellings, and (``value``) the pattern its value must match in
    full, with ``what`` it looks like for the error; None: it takes no value.  ``optional``: the value is
    taken only when the next word matches (netperf's ``-c [rate]``)."""

    names: tuple[str, ...]
    value: str | None = None
    what: str = ""
    optional: bool = False

    def matches(self, text: str) -> bool:
        return self.value is not None and re.fullmatch(self.value, text) is not None


@dataclass(frozen=True)
class Arg:
    """One parsed option: as written (``given``), its value, and the table it was read from (``part``: 0 the
    first, netperf's global options; 1 the second, its test options)."""

    given: str
    opt: Opt
    value: str | None
    part: int

    def words(self) -> list[str]:
        """Canonical spelling: ``--name=value`` for a long option (no prefix, no second word to misread),
        ``-x value`` for a short one."""
        if self.value is None:
            return [self.given]
        return [f"{self.given}={self.value}"] if self.given.startswith("--") else [self.given, self.value]


# Value patterns the tools share.
INT = r"[0-9]{1,9}"
NUMBER = r"[0-9]{1,9}(\.[0-9]{1,6})?"
SIZE = r"[0-9]{1,12}(\.[0-9]{1,3})?[kKmMgGtT]?"


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


def table(options: Iterable[Opt]) -> dict[str, Opt]:
    """Every spelling of every option -> the option."""
    return {name: opt for opt in options for name in opt.names}


def refusals(groups: Iterable[tuple[tuple[str, ...], str]]) -> dict[str, str]:
    """Every spelling of every refused option -> why meshperf refuses it."""
    return {name: why for names, why in groups for name in names}


def parse(tokens: Sequence[str], tool: str, allowed: Sequence[Mapping[str, Opt]], refused: Sequence[Mapping[str, str]],
          global_first: Iterable[str] = ()) -> list[Arg]:
    """``tokens`` checked option by option against ``allowed`` (option tables) and ``refused`` (option -> why
    meshperf cannot pass it).  One table each for iperf3; for netperf two, for before a literal ``--``
    (global options) and after it (test options).  With no ``--``, an option is read as a test option
    unless it is in ``global_first``, and otherwise as the first reading whose value fits (netperf's
    ``-T tcp`` is the protocol, ``-T 0,1`` the CPU binding)."""
    sectioned = len(allowed) == 2
    tokens = list(tokens)
    section = 0 if sectioned and "--" in tokens else None
    prefer_global = frozenset(global_first)
    out, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            if not sectioned:
                raise ArgError(f"--: {tool} takes no '--'")
            if section == 1:
                raise ArgError("--: given twice")
            section, i = 1, i + 1
            continue
        given, inline = token, None
        if token.startswith("--") and "=" in token:
            given, inline = token.split("=", 1)
        if not given.startswith("-") or given == "-":
            raise ArgError(f"{token!r}: a value without an option before it (or after an option that takes none)")
        if not given.startswith("--") and len(given) > 2:
            raise ArgError(f"{given}: write a short option and its value (or several short options) as separate "
                           f"words, e.g. '{given[:2]} {given[2:]}', so meshperf can check each")
        if section is not None or not sectioned:
            where = [section] if sectioned else [0]
        else:
            where = [0, 1] if given in prefer_global else [1, 0]
        candidates = [(allowed[w][given], w) for w in where if given in allowed[w]]
        if not candidates:
            # With no '--', what meshperf owns is named as the global option (-H, -p: the user's intent).
            why = next((refused[w][given] for w in sorted(where) if given in refused[w]), None)
            if why is not None:
                raise ArgError(f"{given}: {why}")
            raise ArgError(_unknown(given, tool, allowed, refused))
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        error = None
        for opt, w in candidates:
            value, used, error = _value(opt, given, token, inline, following)
            if error is None:
                break
        if error is not None:
            first = candidates[0][0]
            raise ArgError(_value(first, given, token, inline, following)[2])
        out.append(Arg(given, opt, value, w))
        i += 1 + used
    return out


def _value(opt, given, token, inline, following):
    """(value, words used after the option, error or None) for one reading of the option."""
    if opt.value is None:
        return (None, 0, f"{given}: takes no value ({token!r})") if inline is not None else (None, 0, None)
    if inline is not None:
        return (inline, 0, None) if opt.matches(inline) else (None, 0, f"{given} {inline}: give {opt.what}")
    if opt.optional:
        return (following, 1, None) if following is not None and opt.matches(following) else (None, 0, None)
    if following is None or following == "--":
        return None, 0, f"{given} needs a value: {opt.what}"
    if not opt.matches(following):
        return None, 0, f"{given} {following}: give {opt.what}"
    return following, 1, None


def _unknown(given, tool, allowed, refused):
    names = sorted({name for t in list(allowed) + list(refused) for name in t})
    if given.startswith("--"):
        full = [name for name in names if name.startswith(given) and name != given]
        if full:
            return (f"{given}: {tool} would read it as {' or '.join(full[:3])}; write options in full (meshperf "
                    "checks full names only)")
    close = difflib.get_close_matches(given, names, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{given}: not on meshperf's list of {tool} options{hint} (README: Native tool arguments)"


def flatten(args: Iterable[Arg]) -> list[str]:
    argv = []
    for arg in args:
        argv.extend(arg.words())
    return argv
