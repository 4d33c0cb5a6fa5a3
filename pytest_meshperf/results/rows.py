"""Row: what the terminal summary and reports need of one measurement, without its raw data."""

import sys
from dataclasses import dataclass, field
from typing import Dict, List


@dataclass(**({"slots": True} if sys.version_info >= (3, 10) else {}))   # a run can have 10^6 of them
class Row:
    """What the terminal summary and reports need of one measurement, without its raw data."""
    src: str
    dst: str
    test: str
    name: str
    status: str
    metrics: Dict[str, float]
    messages: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)   # the record's: why its figures may mislead
