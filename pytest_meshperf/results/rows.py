"""Row: what the terminal summary and reports need of one measurement, without its raw data."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass(**({"slots": True} if sys.version_info >= (3, 10) else {}))   # a run can have 10^6 of them
class Row:
    """What the terminal summary and reports need of one measurement, without its raw data."""
    src: str
    dst: str
    test: str
    name: str
    status: str
    metrics: dict[str, float]
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # the record's: why its figures may mislead
    doubtful: list[str] = field(default_factory=list)   # the record's (validity.py): why not to trust its figure
