"""A profile run on its own: ``pytest --mesh-profile NAME`` with no test path collects the profile file itself.

The profile's ``.yaml`` file becomes a test module holding one mesh test named
after the profile (``suites/profiles/tcp.yaml::tcp[node1->node2]``).  It is a
``pytest.Module`` whose module object is built here instead of imported, so
parametrization, fixtures, ``-k``, marks, schedules and pytest-xdist treat it
like any test module (every worker collects it the same way from the same
arguments).  The test itself is ``measure()``: the profile reaches it as the
lowest parameter and threshold layer, as it reaches every mesh test of the run.
"""
from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from pytest_meshperf.spec.profiles import SHIPPED_PREFIX, load_profile, shown_path


def alone(config: pytest.Config) -> bool:
    """No test path was given (pytest falls back to the invocation dir or testpaths): run only the profile."""
    return config.args_source != pytest.Config.ArgsSource.ARGS


def run_profile_alone(config: pytest.Config, profile_path: str) -> None:
    """Make this session collect the profile file instead of the invocation dir (the spec's --profile)."""
    config.args = [profile_path]


def collect_file(file_path: Path, parent: pytest.Collector, profile_path: str) -> pytest.Module | None:
    """The profile's test module when pytest reaches the profile file of a profile-only run, else None."""
    if profile_path is None or os.path.abspath(str(file_path)) != profile_path:
        return None
    shown = shown_path(profile_path, str(parent.config.rootpath))
    if shown.startswith(SHIPPED_PREFIX):   # outside the rootdir: pytest would give it an empty node id
        return ProfileModule.from_parent(parent, path=file_path, nodeid=shown)
    return ProfileModule.from_parent(parent, path=file_path)


def _measure_profile(mesh_pair, measure):
    """Measure the pair with the --mesh-profile file's tool, parameters and thresholds."""
    measure()


class ProfileModule(pytest.Module):
    @property
    def test_name(self) -> str:
        return os.path.splitext(self.path.name)[0]

    # _getobj is where pytest.Module imports its file (pytest 7.4 to 9): here the module is built instead.
    def _getobj(self):
        module = types.ModuleType(f"meshperf_profile_{self.test_name}",
                                  load_profile(str(self.path)).description or None)
        module.__file__ = str(self.path)
        setattr(module, self.test_name, _measure_profile)
        return module

    def funcnamefilter(self, name: str) -> bool:
        return name == self.test_name
