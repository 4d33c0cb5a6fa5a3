"""YAML read with line numbers: composed nodes, repeated keys refused, every message one line naming file:line.

hosts.yaml (cluster/hosts_file.py), profiles (spec/profiles.py) and threshold files (spec/threshold_lists.py)
read through it: a subclass sets ``error`` and walks the nodes with the loader open, so values are constructed
(and merge keys honoured) where they stand.
"""

from __future__ import annotations

import collections.abc
from typing import Any

import yaml

from pytest_meshperf.errors import MeshperfError

MERGE_TAG = "tag:yaml.org,2002:merge"
NULL_TAG = "tag:yaml.org,2002:null"
_YamlNode = yaml.Node
_Pairs = dict[str, tuple[_YamlNode, _YamlNode]]


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str) -> str:
    return " ".join(message.splitlines()) if ("\n" in message or "\r" in message) else message


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({short(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({short(value)})"
    if isinstance(value, str):
        return f"a string ({short(value)})"
    if isinstance(value, collections.abc.Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__} ({short(value)})"


def yaml_problem(err: yaml.YAMLError, text: str) -> tuple[int, int, str, str, str]:
    """(line, column, kind, problem, fix) of a YAML error, the problem on one line."""
    if isinstance(err, yaml.reader.ReaderError):
        before = text[: err.position]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        return (line, column, "YAML syntax error", f"unacceptable character #x{err.character:04x}: {err.reason}",
                "remove the character")
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    if context:
        problem = f"{problem} ({context})"
    if isinstance(err, yaml.constructor.ConstructorError):
        kind, fix = "invalid YAML", "use plain YAML values (no tags or bad merges) there"
    else:
        kind, fix = "YAML syntax error", "check indentation, ':', '-' and quotes there"
    return line, column, kind, " ".join(problem.split()), fix


class YamlDocument:
    """One YAML file's nodes, read with the loader open; a subclass names its error type (``error``) and walks them."""

    error: type[MeshperfError] = MeshperfError

    def __init__(self, display: str) -> None:
        self.display = display   # the file as messages name it
        self.loader: yaml.SafeLoader | None = None
        self._pairs_cache: dict[int, _Pairs] = {}

    def read_nodes(self, text: str, walk: Any) -> Any:
        """``walk(root node or None)`` with the loader open; a YAML error becomes one ``error`` line."""
        try:
            self.loader = yaml.SafeLoader(text)  # checks the characters already
            try:
                return walk(self.loader.get_single_node())
            finally:
                self.loader.dispose()
        except yaml.YAMLError as err:
            raise self.yaml_error(err, text) from None

    def fail(
        self, at: _YamlNode | int, where: str, what: str, fix: str
    ) -> MeshperfError:
        line = at if isinstance(at, int) else at.start_mark.line + 1
        return self.error(
            one_line(f"{self.display}:{line}: {where}: {what}; {fix}")
        )

    def yaml_error(self, err: yaml.YAMLError, text: str) -> MeshperfError:
        """A YAML error as one line: ``file:line:column: kind: problem; fix``."""
        line, column, kind, problem, fix = yaml_problem(err, text)
        return self.error(one_line(f"{self.display}:{line}:{column}: {kind}: {problem}; {fix}"))

    def repeated_key(self, key_node: _YamlNode, where: str, key: str, first_line: int) -> MeshperfError:
        """A key given twice in one mapping: a subclass may say what to write instead."""
        return self.fail(key_node, where, f"key {key!r} is given twice (first at line {first_line})",
                         "keep only one of them")

    # -- nodes --------------------------------------------------------------

    def value(self, node: _YamlNode) -> Any:
        assert self.loader is not None
        return self.loader.construct_object(node, deep=True)

    @staticmethod
    def is_null(node: _YamlNode) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG

    def node_kind(self, node: _YamlNode) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        return kind_of(self.value(node))

    def pairs(self, node: yaml.MappingNode, where: str) -> _Pairs:
        """Keys of a mapping -> (key node, value node); rejects repeated and non-string keys.

        Merge keys (``<<: *anchor``) are honoured; the mapping's own keys win.
        """
        cached = self._pairs_cache.get(id(node))
        if cached is not None:
            return cached
        own: _Pairs = {}
        has_merge = False
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                has_merge = True
                continue
            key = self.key(key_node, where)
            if key in own:
                raise self.repeated_key(key_node, where, key, own[key][0].start_mark.line + 1)
            own[key] = (key_node, value_node)
        result = own
        if has_merge:
            assert self.loader is not None
            self.loader.flatten_mapping(node)
            result = {}
            for key_node, value_node in node.value:
                result[self.key(key_node, where)] = (key_node, value_node)
        self._pairs_cache[id(node)] = result
        return result

    def key(self, key_node: _YamlNode, where: str) -> str:
        key = self.value(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or not key:
            shown = self.node_kind(key_node)
            raise self.fail(
                key_node,
                where,
                f"key is {shown}, not a name",
                "use plain words as keys",
            )
        return key
