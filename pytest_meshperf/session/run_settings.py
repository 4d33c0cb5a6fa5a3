"""What a run was asked for, read once from the options: parameters, thresholds, SSH, baseline, profile, export.

A bad value is a usage error that names the ini key and its file when it came from one (``blame``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pytest_meshperf.errors import UsageError
from pytest_meshperf.results.export import export_path
from pytest_meshperf.session.options import Settings
from pytest_meshperf.spec.params import Layer, parse_params
from pytest_meshperf.spec.profiles import Profile, find_profile, load_profile
from pytest_meshperf.spec.thresholds import Threshold, parse_threshold
from pytest_meshperf.transport.options import SshOptions, ssh_options_from
from pytest_meshperf.verdicts.baseline import Baseline, load_baseline
from pytest_meshperf.vocabulary import TOOL_BINARIES

# The command-line parameters (--mesh-duration ...) as the parameter names the marks use.
_PARAM_OPTIONS = (("duration", "meshperf_duration"), ("parallel", "meshperf_parallel"), ("omit", "meshperf_omit"),
                  ("bitrate", "meshperf_bitrate"), ("instances", "meshperf_instances"), ("tool", "meshperf_tool"),
                  ("args", "meshperf_tool_args"))


@contextlib.contextmanager
def blame(settings: Settings, *dests: str) -> Iterator[None]:
    """A usage error raised inside names the ini key and file of the first of ``dests`` an ini file gave."""
    try:
        yield
    except UsageError as exc:
        given = [dest for dest in dests if settings.from_ini(dest)]
        if given and not any(settings.origins.get(d, "").startswith("-") for d in dests):
            raise settings.blame(given[0], exc) from None
        raise


MAX_RETEST_ROUNDS = 10


@dataclass
class RunSettings:
    params: Layer                        # --mesh-duration, --mesh-tool ... as a parameter layer
    thresholds: list[Threshold]          # --mesh-threshold
    ssh_options: SshOptions              # known_hosts may be filled in later, by a netns testbed
    baseline: Baseline | None
    skip_unreachable: bool
    doubtful_fails: bool                 # --mesh-doubtful=fail
    retest_rounds: int                   # --mesh-retest N (0: off)
    diagnose: bool                       # --mesh-diagnosis
    profile_path: str | None
    profile: Profile | None
    export_path: str | None
    write_report: bool
    lease_s: float

    @classmethod
    def read(cls, config: Any, settings: Settings) -> RunSettings:
        opt = config.option
        base_dir = str(config.invocation_params.dir)
        with blame(settings, *(dest for _, dest in _PARAM_OPTIONS)):
            params = parse_params(_option_values(opt), "command line")
        with blame(settings, "meshperf_threshold"):
            thresholds = [parse_threshold(expr, "--mesh-threshold") for expr in opt.meshperf_threshold or []]
        with blame(settings, "meshperf_known_hosts", "meshperf_ssh_config", "meshperf_remote_dir",
                   *("meshperf_local_" + binary for binary in TOOL_BINARIES)):
            ssh_options = ssh_options_from(opt, base_dir)
        with blame(settings, "meshperf_baseline", "meshperf_max_regression", "meshperf_regression_metric"):
            baseline = load_baseline(opt.meshperf_baseline, opt.meshperf_max_regression,
                                     opt.meshperf_regression_metric, base_dir)
        with blame(settings, "meshperf_retest"):
            if not 0 <= (opt.meshperf_retest or 0) <= MAX_RETEST_ROUNDS:
                raise UsageError(f"--mesh-retest {opt.meshperf_retest}: give a number of re-test rounds from 0 "
                                 f"(off) to {MAX_RETEST_ROUNDS}")
        with blame(settings, "meshperf_profile"):
            profile_path, profile = _profile(opt.meshperf_profile, [config.rootpath, base_dir], base_dir)
        return cls(params=params, thresholds=thresholds, ssh_options=ssh_options, baseline=baseline,
                   skip_unreachable=opt.meshperf_unreachable == "skip",
                   doubtful_fails=opt.meshperf_doubtful == "fail", retest_rounds=opt.meshperf_retest or 0,
                   diagnose=opt.meshperf_diagnosis != "off", profile_path=profile_path, profile=profile,
                   export_path=export_path(opt.meshperf_export, base_dir), write_report=opt.meshperf_report != "no",
                   lease_s=opt.meshperf_lease)


def _profile(value, search, base_dir):
    """--mesh-profile: (absolute path, Profile), or (None, None); a bad name or file is a usage error."""
    if not value:
        return None, None
    path, shown = find_profile(value, search, base_dir)
    return path, load_profile(path, shown)


def _option_values(opt):
    values = {}
    for key, attr in _PARAM_OPTIONS:
        value = getattr(opt, attr, None)
        if value is not None:
            values[key] = value
    return values
