"""Thresholds given as data (a mark's list or mapping) or as a YAML file, each remembering where it was written."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from pytest_meshperf.errors import ThresholdError
from pytest_meshperf.spec.thresholds import GENERIC_EXAMPLE, Threshold, parse_threshold
from pytest_meshperf.yamlfile import YamlDocument, one_line, yaml_problem


class _Located(str):
    """A string that remembers where it was read (``file.yaml:4``)."""

    origin: str = ""


def _located(value: str, origin: str) -> _Located:
    located = _Located(value)
    located.origin = origin
    return located


def _origin_of(item: Any, default: str) -> str:
    return getattr(item, "origin", default)


def _scalar_text(value: Any) -> str:
    return "" if value is None else str(value)


def _from_mapping(mapping: Mapping[Any, Any], origin: str) -> list[Threshold]:
    out: list[Threshold] = []
    for key, spec in mapping.items():
        key_origin = _origin_of(key, origin)
        if not isinstance(key, str):
            raise ThresholdError(
                f"{key_origin}: metric name {key!r} is not a string; write it like throughput: '>= 9Gbit/s'"
            )
        name = key.strip()
        if isinstance(spec, Mapping):
            for op, value in spec.items():
                expr = (
                    f"{name} {_scalar_text(op).strip()} {_scalar_text(value).strip()}"
                )
                out.append(parse_threshold(expr, _origin_of(op, key_origin)))
        elif isinstance(spec, (list, tuple)):
            for condition in spec:
                expr = f"{name} {_scalar_text(condition).strip()}"
                out.append(parse_threshold(expr, _origin_of(condition, key_origin)))
        else:
            expr = f"{name} {_scalar_text(spec).strip()}".strip()
            out.append(parse_threshold(expr, _origin_of(spec, key_origin)))
    return out


def parse_thresholds(items: Any, origin: str) -> list[Threshold]:
    """Parse thresholds given as data (``mark(thresholds=...)``, YAML files, API).

    Accepted forms (all may be mixed in a list):

    * a list of expressions: ``["throughput>=9Gbit/s", "retransmits<=100"]``
      (a single string is one expression; ``Threshold`` objects pass through);
    * a mapping of metric to condition(s), the condition being ``"OP VALUE"``,
      a list of those, or a mapping ``{OP: VALUE}``::

          {"throughput": ">= 9Gbit/s", "retransmits": "<= 100"}
          {"throughput": [">= 9Gbit/s", "<= 10Gbit/s"]}
          {"throughput": {">=": "9Gbit/s", "<=": "10Gbit/s"}, "retransmits": {"<=": 100}}

      In YAML, quote conditions that start with ``>``
      (``throughput: ">= 9Gbit/s"``); the list form needs no quotes::

          - throughput >= 9Gbit/s
          - retransmits <= 100

    The expression recorded for mapping entries is ``"METRIC OP VALUE"``.
    A condition without an operator is an error (no implied direction).
    """
    origin = one_line(origin)
    if items is None:
        return []
    if isinstance(items, (str, Threshold)):
        items = [items]
    if isinstance(items, Mapping):
        return _from_mapping(items, origin)
    if isinstance(items, (bytes, int, float)) or not isinstance(items, Iterable):
        raise ThresholdError(
            f"{_origin_of(items, origin)}: thresholds must be a list of expressions such as "
            f"{GENERIC_EXAMPLE} or a mapping such as throughput: '>= 9Gbit/s', not {items!r}"
        )
    out: list[Threshold] = []
    for item in items:
        if isinstance(item, Threshold):
            out.append(item)
        elif isinstance(item, Mapping):
            out.extend(_from_mapping(item, origin))
        else:
            out.append(parse_threshold(item, _origin_of(item, origin)))
    return out


class ThresholdFile(YamlDocument):
    """A threshold file's YAML as plain data, every scalar and key a ``_Located`` string (``file.yaml:4``).

    Scalars keep their text as written (``1e9`` stays ``"1e9"``): the threshold grammar reads them.
    """

    error = ThresholdError

    def read(self, text: str) -> tuple[Any, str]:
        """(the file's data or None when it is empty, where its top level starts)."""
        def walk(root: Any) -> tuple[Any, str]:
            return self.data(root), f"{self.display}:{root.start_mark.line + 1 if root is not None else 1}"
        return self.read_nodes(text, walk)

    def data(self, node: Any) -> Any:
        if node is None:
            return None
        origin = f"{self.display}:{node.start_mark.line + 1}"
        if isinstance(node, yaml.ScalarNode):
            return _located(node.value, origin)
        if isinstance(node, yaml.SequenceNode):
            return [self.data(child) for child in node.value]
        return {_located(key, f"{self.display}:{key_node.start_mark.line + 1}"): self.data(value_node)
                for key, (key_node, value_node) in self.pairs(node, "thresholds").items()}

    def yaml_error(self, err: yaml.YAMLError, text: str) -> ThresholdError:
        line, _column, _kind, problem, _fix = yaml_problem(err, text)
        hint = ""
        if "chomping" in problem or "block scalar" in problem:
            hint = "; quote conditions that start with an operator, e.g. throughput: '>= 9Gbit/s'"
        return ThresholdError(f"{self.display}:{line}: invalid YAML: {problem}{hint}")

    def repeated_key(self, key_node: Any, where: str, key: str, first_line: int) -> ThresholdError:
        return ThresholdError(f"{self.display}:{key_node.start_mark.line + 1}: duplicate key {key!r} (first at line "
                              f"{first_line}); put several conditions in a list or a mapping, e.g. "
                              f"{key}: {{'>=': 1, '<=': 2}}")


def load_threshold_file(path: str | os.PathLike[str]) -> list[Threshold]:
    """Thresholds from a YAML file (any form :func:`parse_thresholds` accepts).

    The top level may also be a mapping whose only key is ``thresholds``.  The
    origin of each threshold is ``"<path as given>:<line>"`` (1-based line of
    its YAML node); every error names the file and line.  An empty file gives
    no thresholds.
    """
    shown = os.fspath(path)
    try:
        with open(shown, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise ThresholdError(
            f"{shown}: cannot read threshold file: {err.strerror or err}"
        ) from None
    except UnicodeDecodeError:
        raise ThresholdError(
            f"{shown}: cannot read threshold file: not UTF-8 text"
        ) from None
    data, origin = ThresholdFile(shown).read(text)
    if data is None:
        return []
    if isinstance(data, dict) and list(data) == ["thresholds"]:
        data = data["thresholds"]
    if isinstance(data, str):
        raise ThresholdError(
            f"{_origin_of(data, origin)}: expected a list of thresholds such as "
            f"'- {GENERIC_EXAMPLE}', not a single value"
        )
    return parse_thresholds(data, origin)
