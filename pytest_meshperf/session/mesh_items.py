"""What a collected mesh test is: a test that uses ``mesh_pair`` or carries the meshperf mark, never an id.

Shared by the plugin's hooks, the session and the xdist hand-off; imports nothing of meshperf.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

MESH_MARK = "meshperf"
SPEC_KEY = pytest.StashKey()   # a mesh item's TestSpec (testspec.py), set at collection


def is_mesh_item(item: pytest.Item) -> bool:
    return "mesh_pair" in getattr(item, "fixturenames", ()) or item.get_closest_marker(MESH_MARK) is not None


@dataclass
class MeshItems:
    """The mesh tests of this run: pair tests by node id (-> source node), check items, and with ``rounds``
    each pair test's round (-> "test key#round", a group the controller measures at once)."""
    sources: dict[str, str] = field(default_factory=dict)
    checks: set[str] = field(default_factory=set)
    rounds: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.sources)

    def to_json(self) -> dict:
        return {"sources": self.sources, "checks": sorted(self.checks), "rounds": self.rounds}

    @classmethod
    def from_json(cls, data: dict) -> MeshItems:
        return cls(dict(data.get("sources") or {}), set(data.get("checks") or ()), dict(data.get("rounds") or {}))
