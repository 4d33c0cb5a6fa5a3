"""Error types shared by the controller side.

A ``UsageError`` is a user mistake (bad inventory, bad threshold, bad option):
the plugin turns it into pytest's usage-error exit (4) with its one-line message
and no traceback.  A ``MeasurementError`` is a measurement that could not be
made; the plugin reports the test as an error, never as a threshold failure.
When its tool client ran, it carries what the client did (``ClientRun``), so
the result file and the export keep the failed command, its exit and output.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

OUTPUT_TAIL_CHARS = 64 * 1024   # of a failed client's stdout and stderr, the end is kept (the error is there)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` (a tool's own words, say) fit for a terminal: control characters other than newline and tab
    shown as ``\\x1b`` rather than sent (an escape sequence in a tool's output would act on the terminal).
    Results keep the raw text."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class MeshperfError(Exception):
    """Base of every meshperf error."""


class UsageError(MeshperfError):
    """A user mistake; ``str(err)`` is the whole one-line message."""


class InventoryError(UsageError):
    """The cluster specification (``--cluster``) is invalid."""


class ThresholdError(UsageError):
    """A threshold expression is invalid."""


class ParameterError(UsageError):
    """A measurement parameter (mark, option, profile) is invalid."""


class ResultsWriteError(MeshperfError):
    """A result could not be written (a full disk, a quota); ``str(err)`` is one line naming the file."""


@dataclass
class ClientRun:
    """What a tool client that ran and failed did: its command line (no secrets: tool arguments only),
    how it ended, the last OUTPUT_TAIL_CHARS of its stdout and stderr, its start and end (epoch s)."""
    command: str
    pid: int | None
    exit_code: int | None      # None: killed by a signal
    signal: int | None
    timed_out: bool               # killed at its time limit
    stdout: str
    stderr: str
    started: float | None
    ended: float | None

    @classmethod
    def from_process(cls, proc: dict[str, Any]) -> ClientRun:
        """From an agent's process result (supervisor.py ``result()``)."""
        return cls(command=proc.get("command") or "", pid=proc.get("pid"), exit_code=proc.get("exit_code"),
                   signal=proc.get("signal"), timed_out=bool(proc.get("timed_out")),
                   stdout=(proc.get("stdout") or "")[-OUTPUT_TAIL_CHARS:],
                   stderr=(proc.get("stderr") or "")[-OUTPUT_TAIL_CHARS:],
                   started=proc.get("started"), ended=proc.get("ended"))


class MeasurementError(MeshperfError):
    """A measurement could not be made: tool error, refused connection, time-out.
    ``client``: what the tool client did, when one ran (None: the error came before any client ran)."""

    def __init__(self, message: str, client: ClientRun | None = None):
        super().__init__(message)
        self.client = client


class AgentError(MeshperfError):
    """An agent could not be started or answered with an error."""


class TransportError(AgentError):
    """A node could not be reached, checked or set up (SSH, host keys, python3, deploy)."""
