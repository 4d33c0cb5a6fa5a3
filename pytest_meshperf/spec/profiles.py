"""Profiles: YAML files that name a tool, its parameters and its thresholds.

    # suites/tcp.yaml
    description: TCP throughput, one stream
    tool: iperf3
    duration: 3
    thresholds:
      - throughput >= 1Gbit/s
      - retransmits <= 10000

A test uses one with ``@pytest.mark.meshperf(profile="tcp")`` (a NAME: the user's
``suites/profiles/tcp.yaml`` under the rootdir, else the ``tcp`` profile shipped with
meshperf) or ``profile="lab/tcp.yaml"`` (a path relative to the test module);
``--mesh-profile NAME|PATH`` names one for the whole run.  Shipped profiles: tcp,
udp, latency, throughput (``data/profiles/``).  Every threshold remembers ``file:line``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from pytest_meshperf import PACKAGE_DIR
from pytest_meshperf.errors import ParameterError
from pytest_meshperf.spec.params import Layer, parse_params
from pytest_meshperf.spec.thresholds import Threshold, parse_threshold
from pytest_meshperf.yamlfile import YamlDocument

_NON_PARAM_KEYS = ("description", "thresholds")
PROFILE_DIR = os.path.join("suites", "profiles")   # where a profile NAME is looked for first, under each search root
SHIPPED_DIR = os.path.join(PACKAGE_DIR, "data", "profiles")  # then: meshperf's own
SHIPPED_PREFIX = "meshperf:"   # how messages and result keys show a shipped profile: meshperf:profiles/tcp.yaml


@dataclass(frozen=True)
class Profile:
    path: str
    description: str
    params: Layer                       # parsed (Params fields), with their file:line
    thresholds: tuple[Threshold, ...]


_cache = {}


def load_profile(path: str, shown: str | None = None) -> Profile:
    """Load (once per process) the profile at ``path``; errors name ``shown`` (the path as the user wrote it)."""
    shown = shown or path
    key = os.path.abspath(path)
    if key not in _cache:
        _cache[key] = _load(path, shown)
    return _cache[key]


def is_profile_name(value: str) -> bool:
    """A NAME (looked up) rather than a path: no '/' and no .yaml/.yml ending."""
    return not ("/" in value or os.sep in value or value.endswith((".yaml", ".yml")))


def find_profile(value: str, search_roots: Sequence[str | os.PathLike[str]], base_dir: str,
                 option: str = "--mesh-profile") -> tuple[str, str]:
    """A profile NAME or path -> (absolute path, path as shown); ParameterError naming what was searched.

    A path (see ``is_profile_name``) is relative to ``base_dir``.  A NAME is ``suites/profiles/NAME.yaml``
    under each of ``search_roots`` in turn, then the profile of that name shipped with meshperf
    (``data/profiles/``): the user's own wins.
    """
    if not is_profile_name(value):
        path = os.path.abspath(os.path.join(base_dir, os.path.expanduser(value)))
        if not os.path.isfile(path):
            raise ParameterError(f"{option} {value}: no such file ({path}); give a profile NAME or the path of a "
                                 "profile .yaml file")
        return path, value
    searched, found = [], []
    folders = [os.path.join(root, PROFILE_DIR) for root in dict.fromkeys(os.path.abspath(str(r)) for r in search_roots)]
    for folder in dict.fromkeys(folders + [SHIPPED_DIR]):   # each place once, in order
        path = os.path.join(folder, value + ".yaml")
        if os.path.isfile(path):
            return path, shown_path(path, base_dir)
        searched.append(folder)
        try:
            found += [name[:-5] for name in sorted(os.listdir(folder)) if name.endswith(".yaml")]
        except OSError:
            pass
    raise ParameterError(f"{option} {value}: no profile of that name; searched {', '.join(searched)} (profiles there: "
                         f"{', '.join(dict.fromkeys(found)) or 'none'}); give one of those names or the path of a "
                         "profile .yaml file")


def shown_path(path: str, base_dir: str) -> str:
    """A profile's path as messages and result keys show it: relative to ``base_dir``, or meshperf:profiles/..."""
    if os.path.dirname(os.path.abspath(path)) == SHIPPED_DIR:
        return SHIPPED_PREFIX + "profiles/" + os.path.basename(path)
    shown = os.path.relpath(path, base_dir)
    return path if shown.startswith("..") else shown


def _load(path, shown):
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ParameterError(f"{shown}: cannot read profile: {exc.strerror or exc}; check the path (relative to the "
                             "test module)")
    doc = _ProfileFile(shown)
    return doc.read_nodes(text, lambda root: _profile(doc, root, shown))


class _ProfileFile(YamlDocument):
    error = ParameterError


def _profile(doc, root, shown):
    if root is None:
        raise ParameterError(f"{shown}: the profile is empty; give at least a tool or thresholds")
    if not isinstance(root, yaml.MappingNode):
        raise ParameterError(f"{shown}:{root.start_mark.line + 1}: a profile must be a mapping of keys such as tool, "
                             "duration, thresholds")
    raw_params, description, thresholds = Layer(shown), "", []
    for key, (key_node, value_node) in doc.pairs(root, "profile").items():
        line = key_node.start_mark.line + 1
        if key == "description":
            description = str(value_node.value)
        elif key == "thresholds":
            thresholds = _thresholds(doc, value_node, shown)
        else:
            raw_params.add(parse_params({key: doc.value(value_node)}, f"{shown}:{line}"))
    return Profile(path=shown, description=description, params=raw_params, thresholds=tuple(thresholds))


def _thresholds(doc, node, shown):
    """A list of expressions, or a mapping metric -> 'OP VALUE'."""
    out = []
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                raise ParameterError(f"{shown}:{item.start_mark.line + 1}: a threshold must be an expression such as "
                                     "'throughput >= 1Gbit/s'")
            out.append(parse_threshold(str(item.value), f"{shown}:{item.start_mark.line + 1}"))
    elif isinstance(node, yaml.MappingNode):
        for key, (key_node, value_node) in doc.pairs(node, "thresholds").items():
            out.append(parse_threshold(f"{key} {value_node.value}", f"{shown}:{key_node.start_mark.line + 1}"))
    else:
        raise ParameterError(f"{shown}:{node.start_mark.line + 1}: thresholds must be a list of expressions such as "
                             "'throughput >= 1Gbit/s'")
    return out
