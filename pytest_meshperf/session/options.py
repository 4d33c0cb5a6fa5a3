"""meshperf's pytest settings: one table, each entry a command-line option and the ini key of the same name.

Every option's destination is its ini key (``--mesh-duration`` -> ``meshperf_duration``), so a
repository can keep its settings in pytest.ini, tox.ini, setup.cfg or pyproject.toml; the command
line wins over the ini file.  ``resolve`` writes the winner into ``config.option`` (what the rest of
meshperf reads) and remembers where each value came from, so a bad value names the ini key and
the file.  A flag that another plugin or the repository's conftest also declares (``--cluster`` is
common) is left to it: meshperf keeps its ``--mesh-`` spelling and the ini key.

This module is imported at every pytest start-up, mesh tests or not: it imports nothing heavy.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from pytest_meshperf.errors import UsageError
from pytest_meshperf.vocabulary import HOST_KEY_CHECKS, TOOL_BINARIES

if TYPE_CHECKING:
    import pytest

SCHEDULE_WORDS = "rounds|sequential|burst|incast:NODE"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]                 # the first is the one help and messages use
    dest: str                              # also the ini key
    help: str
    metavar: Any = None
    kind: str = "str"                      # str, int, float, list (repeatable), pair (two words)
    choices: tuple[str, ...] = ()
    default: Any = None
    path: Callable[[str], bool] | None = None   # which values are local paths (relative to the ini file)
    group: str = "meshperf"

    @property
    def flag(self) -> str:
        return self.flags[0]


def _always(value: str) -> bool:
    return True


def _cluster_path(value: str) -> bool:
    return not value.startswith(("local", "netns"))


def _profile_path(value: str) -> bool:
    return "/" in value or value.endswith((".yaml", ".yml"))


OPTIONS = (
    Option(("--cluster", "--mesh-cluster"), "meshperf_cluster", metavar="SPEC", path=_cluster_path,
           help="cluster to measure: a hosts.yaml path; local:N for N nodes on this machine's loopback (default: "
                "local:3); netns:N for N real sshd hosts in network namespaces, built for the run (root only; e.g. "
                "netns:4,rate=200mbit)"),
    Option(("--matrix", "--mesh-matrix"), "meshperf_matrix", metavar=("CLIENTS", "SERVERS"), kind="pair",
           path=_always,
           help="cluster from two text files of hosts (one address or ssh_config alias per line): every client "
                "against every server; instead of --cluster"),
    Option(("--mesh-profile",), "meshperf_profile", metavar="NAME|PATH", path=_profile_path,
           help="profile (tool, parameters, thresholds): NAME is suites/profiles/NAME.yaml under the rootdir, else "
                "a profile shipped with meshperf (tcp, udp, latency, throughput), or a .yaml path; with no test "
                "path it runs on its own, one test per pair; with test paths it is the lowest layer of every mesh "
                "test"),
    Option(("--mesh-export",), "meshperf_export", metavar="FILE", path=_always,
           help="also write the measurements as a flat JSON list (client, server, *_address, success, exit_code, "
                "elapsed_time, stdout, command), netperf-orchestrate's --export format"),
    Option(("--mesh-out",), "meshperf_out", metavar="DIR", path=_always, default="meshperf-results",
           help="where run directories (mesh.json, mesh.csv) go (default: meshperf-results)"),
    Option(("--mesh-threshold",), "meshperf_threshold", metavar="EXPR", kind="list",
           help="threshold applied to every test, e.g. 'throughput>=9Gbit/s', 'retransmits<=100', 'jitter<=1ms', "
                "'loss<=0.1%%' (repeatable; overrides marks and profiles on the same bound)"),
    Option(("--mesh-tool",), "meshperf_tool", metavar="iperf3|netperf",
           help="the tool of every test (overrides marks and profiles)"),
    Option(("--mesh-tool-args",), "meshperf_tool_args", metavar="ARGS",
           help="native arguments for every test's tool, e.g. --mesh-tool-args='-d rr -o P99_LATENCY' (netperf) or "
                "'-Z -w 256K' (iperf3); what meshperf owns (-H, -p, -c, -J ...) is refused"),
    Option(("--mesh-duration",), "meshperf_duration", metavar="TIME",
           help="measurement duration for every test in whole seconds, e.g. 10 or 30s (overrides marks)"),
    Option(("--mesh-parallel",), "meshperf_parallel", metavar="N", kind="int",
           help="parallel streams per measurement (iperf3 -P) for every test"),
    Option(("--mesh-omit",), "meshperf_omit", metavar="TIME",
           help="whole seconds of slow start to omit from results (iperf3 -O) for every test"),
    Option(("--mesh-instances",), "meshperf_instances", metavar="N|auto",
           help="tool processes per pair for every test, each pinned to its own core; auto sizes them from the "
                "cores free on both ends (default 1; pair metrics sum them)"),
    Option(("--mesh-bitrate",), "meshperf_bitrate", metavar="RATE",
           help="target bitrate for every test, e.g. 100Mbit/s (iperf3 -b)"),
    Option(("--mesh-lease",), "meshperf_lease", metavar="SECONDS", kind="float", default=60.0,
           help="agents stop everything and exit after this long without word from pytest (default: 60)"),
    Option(("--mesh-schedule",), "meshperf_schedule", metavar=SCHEDULE_WORDS, default="rounds",
           help="how measurements share the cluster: rounds (default: pairs in rounds of disjoint pairs; a node "
                "never sends or receives twice at once, also under -n), sequential (one measurement at a time in "
                "the whole cluster), burst (every pair of a test at once, from one synchronized start: the whole "
                "fabric loaded) or incast:NODE (every other node sends to NODE at once)"),
    Option(("--mesh-plan",), "meshperf_plan", metavar="PLAN", default="full",
           help="which pairs to measure: full (default: every node to every other), ring (each node to the next "
                "in inventory order), sample:K[,seed=S] (each node to K others and from K others, chosen from the "
                "seed, default 1) or groups:LABEL[,across=A] (a full mesh inside each group of an inventory label such "
                "as rack, and between groups their first A nodes): for fleets where N(N-1) pairs are too many"),
    Option(("--mesh-links",), "meshperf_links", metavar="SRC->DST", kind="list",
           help="measure only these links: node names or shell globs, comma-separated or repeated, e.g. 'node1->*' "
                "or '*->node3' (pytest's -k cannot say '->')"),
    Option(("--mesh-progress",), "meshperf_progress", metavar="SECONDS", kind="float", default=10.0,
           help="write a progress line (pairs and rounds done, failures, elapsed, ETA) at most every SECONDS "
                "(default 10; 0: after every measurement; -1: never)"),
    Option(("--mesh-baseline",), "meshperf_baseline", metavar="OLD", path=_always,
           help="compare every pair test with this earlier run (a mesh.json, a run directory or a results folder): "
                "a metric worse than --mesh-max-regression fails the test; a pair the baseline lacks is listed, "
                "not failed"),
    Option(("--mesh-max-regression",), "meshperf_max_regression", metavar="PERCENT",
           help="how much worse than the baseline a metric may get, e.g. 10%% (default: 10%%); lower throughput "
                "and higher latency, jitter or loss are worse"),
    Option(("--mesh-regression-metric",), "meshperf_regression_metric", metavar="METRIC", kind="list",
           help="compare this metric with the baseline (repeatable; default: each test's main metrics: "
                "throughput, transaction rate, latency, loss, jitter)"),
    Option(("--mesh-report",), "meshperf_report", choices=("yes", "no"), default="yes",
           help="write report.html (heatmaps, per-node view, failures) beside mesh.json after the run: yes "
                "(default) or no"),
    Option(("--mesh-unreachable",), "meshperf_unreachable", choices=("error", "skip"), default="error",
           help="what a pair with an unreachable node becomes: error (default) or skip"),
    Option(("--mesh-diagnosis",), "meshperf_diagnosis", choices=("on", "off"), default="on",
           help="after the mesh, name the sick node, link or group from each test's matrix (findings in the "
                "summary, mesh.json, the report and JUnit): on (default) or off"),
    Option(("--mesh-retest",), "meshperf_retest", metavar="N", kind="int", default=0,
           help="re-measure the links that failed, up to N rounds, each with fresh partners, and mark each "
                "confirmed, flaky (passed on re-test) or inconclusive (default 0: no re-tests)"),
    Option(("--mesh-doubtful",), "meshperf_doubtful", choices=("mark", "fail"), default="mark",
           help="a measurement that may not show the network (CPU-bound sender or receiver, instances that "
                "disagree, a tool error beside the numbers): mark (default: flagged doubtful, verdict kept) or "
                "fail"),
    Option(("--ssh-host-keys",), "meshperf_host_keys", choices=HOST_KEY_CHECKS, group="meshperf-ssh",
           help="host key checking: yes (verify against known_hosts, the default), accept-new (add unknown keys, "
                "refuse changed ones) or off (throwaway labs); overrides the inventory's host_key_check"),
    Option(("--ssh-known-hosts",), "meshperf_known_hosts", metavar="FILE", path=_always, group="meshperf-ssh",
           help="known_hosts file (default: ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts)"),
    Option(("--ssh-config",), "meshperf_ssh_config", metavar="FILE", path=_always, group="meshperf-ssh",
           help="ssh_config file (default: ~/.ssh/config, as OpenSSH)"),
    Option(("--ssh-connect-timeout",), "meshperf_connect_timeout", metavar="SECONDS", kind="float", default=10.0,
           group="meshperf-ssh", help="SSH connect, banner and authentication time-out (default: 10)"),
    Option(("--iperf3",), "meshperf_iperf3", metavar="PATH", group="meshperf-ssh",
           help="iperf3 path on every remote node (default: the inventory's iperf3, else iperf3 on PATH)"),
    Option(("--netperf",), "meshperf_netperf", metavar="PATH", group="meshperf-ssh",
           help="netperf path on every remote node (default: the inventory's netperf, else netperf on PATH)"),
    Option(("--netserver",), "meshperf_netserver", metavar="PATH", group="meshperf-ssh",
           help="netserver path on every remote node (default: the inventory's netserver, else the one beside "
                "netperf, else netserver on PATH)"),
) + tuple(
    Option(("--local-" + binary,), "meshperf_local_" + binary, metavar="PATH", path=_always, group="meshperf-ssh",
           help=f"upload this {binary} binary to every remote node and use it")
    for binary in TOOL_BINARIES
) + (
    Option(("--mesh-remote-dir",), "meshperf_remote_dir", metavar="DIR", group="meshperf-ssh",
           help="directory on the nodes for the agent, uploaded tools and logs, relative to the home directory or "
                "absolute (default: .meshperf)"),
)

BY_DEST = {option.dest: option for option in OPTIONS}
_GROUPS = {"meshperf": "meshperf: full-mesh network measurement", "meshperf-ssh": "meshperf: remote nodes over SSH"}
_INI_TYPES = {"list": "linelist", "pair": "args"}


def argparse_attrs(option: Option, default: Any = None) -> dict[str, Any]:
    """``add_argument`` keywords of an option (pytest's and the ``meshperf`` command's)."""
    attrs: dict[str, Any] = {"dest": option.dest, "help": option.help, "default": default}
    if option.metavar is not None:
        attrs["metavar"] = option.metavar
    if option.choices:
        attrs["choices"] = option.choices
    if option.kind == "list":
        attrs["action"] = "append"
    elif option.kind == "pair":
        attrs["nargs"] = 2
    elif option.kind in ("int", "float"):
        attrs["type"] = int if option.kind == "int" else float
    return attrs


def register(parser: pytest.Parser) -> None:
    """Every option and its ini key.  Option defaults are None: ``resolve`` tells given from not given."""
    _yield_on_conflict(parser)
    for option in OPTIONS:
        parser.getgroup(option.group, _GROUPS[option.group]).addoption(*option.flags, **argparse_attrs(option))
        parser.addini(option.dest, f"meshperf: default for {option.flag} ({_first_sentence(option.help)})",
                      type=_INI_TYPES.get(option.kind, "string"))


def _first_sentence(text: str) -> str:
    return text.split(":")[0].split(";")[0].replace("%%", "%")


_CONFLICTS = "meshperf"   # argparse's conflict_handler name: _ActionsContainer._handle_conflict_meshperf


def _handle_conflict_meshperf(container, action, conflicting):
    """argparse, on a flag declared twice: where one side is meshperf's, meshperf's gives the flag up."""
    if action.dest in BY_DEST and not any(other.dest in BY_DEST for _, other in conflicting):
        for flag, _ in conflicting:        # meshperf registers after the other: its new option drops the flag
            action.option_strings.remove(flag)
        if not action.option_strings:
            return container._handle_conflict_error(action, conflicting)
        return None
    if conflicting and all(other.dest in BY_DEST for _, other in conflicting):
        return container._handle_conflict_resolve(action, conflicting)   # meshperf's option keeps its other flags
    return container._handle_conflict_error(action, conflicting)


def _yield_on_conflict(parser) -> None:
    """pytest 9 builds argparse as options are added, so a conftest's ``--cluster`` would fail at once:
    every argparse container of this parser resolves a conflict with meshperf's options in the other's favour
    (any other conflict is still argparse's error).  Older pytest builds it at parse time: yield_taken_flags."""
    optparser = getattr(parser, "optparser", None)
    if optparser is None:
        return
    # argparse finds a conflict handler by name on the container's class; this one is meshperf's alone.
    argparse._ActionsContainer._handle_conflict_meshperf = _handle_conflict_meshperf
    for container in [optparser] + list(getattr(optparser, "_action_groups", ())):
        container.conflict_handler = _CONFLICTS


def yield_taken_flags(parser: pytest.Parser) -> None:
    """Leave a flag that another plugin or a conftest declares to it (``--cluster`` is common in conftests).

    pytest builds argparse from every group at parse time and fails the whole run on a flag declared
    twice; meshperf's option keeps its other spellings (``--mesh-cluster``) and its ini key."""
    ours = {option.dest for option in OPTIONS}
    taken = set()
    groups = list(getattr(parser, "_groups", ())) + [getattr(parser, "_anonymous", None)]
    for group in groups:
        for argument in getattr(group, "options", ()):
            if getattr(argument, "dest", None) not in ours:
                taken.update(argument.names())
    if not taken:
        return
    for group in groups:
        options = getattr(group, "options", None)
        if options is None:
            continue
        for argument in list(options):
            if argument.dest not in ours or not taken.intersection(argument.names()):
                continue
            argument._long_opts = [flag for flag in argument._long_opts if flag not in taken]
            argument._short_opts = [flag for flag in argument._short_opts if flag not in taken]
            if not argument.names():   # no spelling left: the ini key still sets it
                options.remove(argument)


class Settings:
    """Where each meshperf setting came from: ``where(dest)`` names the flag or the ini key and its file."""

    def __init__(self, origins: dict[str, str]):
        self.origins = origins

    @property
    def given(self) -> bool:
        """Any meshperf option or ini key was set: meshperf is asked for, so its settings are checked now."""
        return bool(self.origins)

    def where(self, dest: str) -> str:
        return self.origins.get(dest) or BY_DEST[dest].flag

    def from_ini(self, dest: str) -> bool:
        return self.origins.get(dest, "").startswith("ini ")

    def blame(self, dest: str, exc: Exception) -> UsageError:
        """A usage error for a bad value, naming the ini key and file when the value came from there."""
        text = str(exc)
        if self.from_ini(dest):
            text = f"{self.origins[dest]}: {text}"
        return UsageError(text)


def resolve(config: pytest.Config) -> Settings:
    """Command line over ini file over default, into ``config.option``; returns where each value came from."""
    opt = config.option
    inipath = getattr(config, "inipath", None)
    ini_dir = os.path.dirname(str(inipath)) if inipath else str(config.rootpath)
    shown_ini = os.path.relpath(str(inipath), str(config.invocation_params.dir)) if inipath else "the ini file"
    origins: dict[str, str] = {}
    for option in OPTIONS:
        given = getattr(opt, option.dest, None)
        if given is not None:
            origins[option.dest] = option.flag
            continue
        raw = config.getini(option.dest)
        if raw in (None, "", []):
            setattr(opt, option.dest, option.default)
            continue
        where = f"ini {option.dest} in {shown_ini}"
        setattr(opt, option.dest, _ini_value(option, raw, ini_dir, where))
        origins[option.dest] = where
    return Settings(origins)


def _ini_value(option: Option, raw: Any, ini_dir: str, where: str) -> Any:
    def bad(what: str) -> UsageError:
        return UsageError(f"{where}: {what}; set it as for {option.flag} (see pytest --help)")

    if option.kind == "list":
        values = [line.strip() for line in raw if line.strip()]
        return values
    if option.kind == "pair":
        words = list(raw)
        if len(words) != 2:
            raise bad(f"{' '.join(words)!r}: give two files, CLIENTS SERVERS")
        return [_ini_path(option, word, ini_dir) for word in words]
    text = str(raw).strip()
    if option.choices and text not in option.choices:
        raise bad(f"{text!r} is not one of {', '.join(option.choices)}")
    if option.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise bad(f"{text!r} is not a whole number") from None
    if option.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise bad(f"{text!r} is not a number") from None
    return _ini_path(option, text, ini_dir)


def _ini_path(option: Option, value: str, ini_dir: str) -> str:
    """A relative path in an ini file is relative to that file, as pytest's own path settings are."""
    if option.path is None or not option.path(value):
        return value
    return os.path.normpath(os.path.join(ini_dir, os.path.expanduser(value)))
