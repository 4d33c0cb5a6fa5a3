"""The run directory's diagnosis: ``diagnosis.json`` (the findings), ``retest/*.jsonl`` (the re-tests'
records, journaled like measurements), and reading back the journal's records for diagnosis.

    <run>/diagnosis.json       {"findings": [...], "links": {test: {link: {"findings": [...], "retest": ...}}}}
    <run>/retest/<writer>.jsonl one line per re-test measurement, fsynced before the next starts

Assembly puts the findings at mesh.json's top level (``diagnosis``) and each link's part into its entry.
"""
from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from typing import Any

from pytest_meshperf.results.journal import Journal
from pytest_meshperf.results.layout import JOURNAL_DIR, _write_json_atomic

DIAGNOSIS_FILE = "diagnosis.json"
RETEST_DIR = "retest"


def journal_records(run_path: str) -> Iterator[dict[str, Any]]:
    """Every whole record of the run's journals, writer by writer (a line cut off by a killed writer is skipped)."""
    for path in sorted(glob.glob(os.path.join(run_path, JOURNAL_DIR, "*.jsonl"))):
        with open(path, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "src" in record and "dst" in record and "test" in record:
                    yield record


def retest_journal(run_path: str, writer: str) -> Journal:
    return Journal(os.path.join(run_path, RETEST_DIR, f"{writer}.jsonl"))


def write_diagnosis(run_path: str, data: dict[str, Any]) -> None:
    _write_json_atomic(os.path.join(run_path, DIAGNOSIS_FILE), data)


def read_diagnosis(run_path: str) -> dict[str, Any] | None:
    """diagnosis.json, or None when the run made none (or it is unreadable: then mesh.json goes without)."""
    try:
        with open(os.path.join(run_path, DIAGNOSIS_FILE), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
