"""What a mesh test asks for: its parameters and thresholds, layer by layer.

Resolved once per test item at collection time, so a bad mark, profile or
threshold is a usage error before anything is measured.  Precedence, lowest
first: the run's --mesh-profile, profile file, mark, ``measure(**overrides)``,
command-line options.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_meshperf.errors import ParameterError, ThresholdError
from pytest_meshperf.spec.params import Layer, Params, merge_params, parse_params
from pytest_meshperf.spec.profiles import Profile, find_profile, is_profile_name, load_profile
from pytest_meshperf.spec.threshold_lists import parse_thresholds
from pytest_meshperf.spec.thresholds import Threshold, merge_thresholds

MARK = "meshperf"


@dataclass(frozen=True)
class TestSpec:
    name: str                                   # short test name
    key: str                                    # the test's key in the result file
    param_layers: tuple[dict[str, Any], ...]    # parsed, lowest precedence first (options excluded)
    threshold_layers: tuple[tuple[Threshold, ...], ...]

    def resolve(self, overrides: dict[str, Any], option_params: Layer,
                option_thresholds: Sequence[Threshold]) -> tuple[Params, list[Threshold]]:
        overrides = dict(overrides)
        override_thresholds = overrides.pop("thresholds", None)
        layers = list(self.param_layers) + [parse_params(overrides, "measure()"), option_params]
        thresholds = list(self.threshold_layers)
        if override_thresholds is not None:
            overrides_parsed = tuple(parse_thresholds(override_thresholds, "measure()"))
            for t in overrides_parsed:
                if t.deferred:
                    raise ThresholdError(f"measure() {t.expression!r}: relative and asymmetry thresholds are judged by "
                                         "check items planned at collection; put it in the mark, a profile or "
                                         "--mesh-threshold")
            thresholds.append(overrides_parsed)
        thresholds.append(tuple(option_thresholds))
        return merge_params(*layers), merge_thresholds(*thresholds)


def _other_params_id(item) -> str:
    """``[<ids>]`` of the test's own parametrization besides mesh_pair, so its variants stay distinct."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "mesh_pair" not in callspec.params or len(callspec.params) < 2:
        return ""
    pair_id, ident = callspec.params["mesh_pair"].id, callspec.id
    for candidate in (pair_id + "-", "-" + pair_id):
        if candidate in ident:
            return f"[{ident.replace(candidate, '', 1)}]"
    return f"[{ident}]"


def spec_for_item(item: Any, invocation_dir: str, base_profile: Profile | None = None,
                  option_params: Layer | None = None, cache: dict[Any, TestSpec] | None = None) -> TestSpec:
    """``base_profile``: the run's --mesh-profile (a Profile), the lowest layer of every mesh test;
    ``option_params``: the command line's layer, merged here only to validate the whole combination now.
    ``cache``: specs already made this run, by test function and marks: the pair items of one function share
    their marks, and parsing them again for each of a 1000-node mesh's 999,000 items cost 40 us apiece."""
    marks = list(item.iter_markers(MARK))
    shared = (str(item.path), item.parent.nodeid, item.originalname, tuple(id(mark) for mark in marks))
    if cache is not None and shared in cache:
        return replace(cache[shared], key=_key(item))
    spec = _spec_for_item(item, marks, invocation_dir, base_profile, option_params)
    if cache is not None:
        cache[shared] = spec
    return spec


def _key(item: Any) -> str:
    key = f"{item.parent.nodeid}::{item.originalname}" if item.parent.nodeid else item.originalname
    return key + _other_params_id(item)


def _spec_for_item(item, marks, invocation_dir, base_profile, option_params):
    param_layers = [base_profile.params.for_every_test()] if base_profile else []
    threshold_layers = [base_profile.thresholds] if base_profile else []
    where = f"{os.path.basename(str(item.path))}::{item.originalname}"
    # Farthest mark first (module pytestmark, class, function) so the closest wins.
    for mark in reversed(marks):
        if mark.args:
            raise ParameterError(f"{where}: @pytest.mark.meshperf takes keyword arguments only, got {mark.args!r}")
        kwargs = dict(mark.kwargs)
        profile = kwargs.pop("profile", None)
        thresholds = kwargs.pop("thresholds", None)
        if profile is not None and is_profile_name(str(profile)):
            loaded = load_profile(*find_profile(str(profile), [item.config.rootpath, invocation_dir], invocation_dir,
                                                f"{where}: profile="))
        elif profile is not None:
            path = os.path.join(os.path.dirname(str(item.path)), str(profile))
            shown = os.path.relpath(path, invocation_dir) if os.path.isabs(path) else path
            loaded = load_profile(path, shown)
        if profile is not None:
            param_layers.append(loaded.params)
            threshold_layers.append(loaded.thresholds)
        param_layers.append(parse_params(kwargs, f"{where}: mark"))
        if thresholds is not None:
            threshold_layers.append(tuple(parse_thresholds(thresholds, "mark")))
    # Validates the combination now (reverse with bidir; a parameter or native argument the tool does not take).
    merge_params(*param_layers, *([option_params] if option_params is not None else []))
    return TestSpec(name=item.originalname, key=_key(item), param_layers=tuple(param_layers),
                    threshold_layers=tuple(threshold_layers))
