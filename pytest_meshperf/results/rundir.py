"""The run directory: created at start with run.json, the latest link, and the journals of its writers."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from pytest_meshperf.errors import ResultsWriteError
from pytest_meshperf.results.journal import Journal
from pytest_meshperf.results.layout import (
    CSV_FILE,
    INDEX_DIR,
    JOURNAL_DIR,
    LATEST,
    MESH_FILE,
    RUN_FILE,
    _write_json_atomic,
)


@dataclass
class RunDir:
    out_dir: str
    run_id: str

    @property
    def path(self) -> str:
        return os.path.join(self.out_dir, self.run_id)

    @property
    def mesh_json(self) -> str:
        return os.path.join(self.path, MESH_FILE)

    @property
    def csv(self) -> str:
        return os.path.join(self.path, CSV_FILE)

    @property
    def logs(self) -> str:
        return os.path.join(self.path, "agents")

    def create(self, run: dict[str, Any], cluster: dict[str, Any]) -> None:
        """The run's directory, new: one that is there already as a symlink (or not a directory) is refused,
        never followed (someone who can write --mesh-out could point it at any file of the user's)."""
        os.makedirs(self.out_dir, exist_ok=True)
        try:
            os.mkdir(self.path)
        except FileExistsError:
            if os.path.islink(self.path) or not os.path.isdir(self.path):
                raise ResultsWriteError(f"the run directory {self.path} is already there, and is not a directory "
                                        "(a symlink?): refusing to write through it")
        os.makedirs(os.path.join(self.path, JOURNAL_DIR), exist_ok=True)
        self.write_meta(run, cluster)
        self._point_latest()

    def write_meta(self, run: dict[str, Any], cluster: dict[str, Any]) -> None:
        _write_json_atomic(os.path.join(self.path, RUN_FILE), {"run": run, "cluster": cluster})

    def read_meta(self) -> dict[str, Any]:
        with open(os.path.join(self.path, RUN_FILE), encoding="utf-8") as handle:
            return json.load(handle)

    def _point_latest(self):
        link = os.path.join(self.out_dir, LATEST)
        tmp = link + f".{os.getpid()}.tmp"
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.run_id, tmp)
            os.replace(tmp, link)
        except OSError:  # no symlinks here: a plain file naming the run
            with open(link + ".txt", "w") as handle:
                handle.write(self.run_id + "\n")

    def journal(self, writer: str) -> Journal:
        return Journal(os.path.join(self.path, JOURNAL_DIR, f"{writer}.jsonl"),
                       os.path.join(self.path, INDEX_DIR, f"{writer}.jsonl"))
