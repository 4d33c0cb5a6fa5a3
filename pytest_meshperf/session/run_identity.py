"""A run's identity, shared by every process of it (plain pytest, xdist's controller and its workers)."""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass


def new_run_id(epoch: float) -> str:
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class RunIdentity:
    """What every process of one run shares: where results go and the agents' secret (never on disk)."""
    run_id: str
    out_dir: str
    secret: str
    started: float

    def as_workerinput(self) -> dict:
        return {"run_id": self.run_id, "out_dir": self.out_dir, "secret": self.secret, "started": self.started}
