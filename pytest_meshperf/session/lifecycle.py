"""When meshperf wakes up in a pytest run: only once a mesh test is collected, never because of a test's id.

The plugin is installed into repositories whose tests are mostly not mesh tests.
Until a test that uses ``mesh_pair`` (or the meshperf mark) is collected,
meshperf builds nothing, starts nothing, writes nothing and prints nothing; its
session (``session.MeshSession``, with its imports) is made on first need.  Any
meshperf option or ini key given is checked at start-up all the same: a typo is
a usage error at once, not after an hour of other tests.

Under pytest-xdist the controller collects nothing, so a worker that collected
mesh tests says which ones (node id -> source node, and the check items) in a
small file in a private temporary directory of the controller's (``workerinput``);
the controller reads it when that worker's collection arrives
(``pytest_xdist_node_collection_finished``), before any test is handed out, so
no id is ever parsed to guess what a test is.  Not in the results folder: pytest
picks its rootdir from the arguments that exist as paths (``--mesh-out DIR``),
and a worker starting after another had created it would collect other node ids.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from typing import TYPE_CHECKING

import pytest

from pytest_meshperf.errors import MeshperfError, UsageError
from pytest_meshperf.session.mesh_items import MeshItems
from pytest_meshperf.session.options import Settings, resolve
from pytest_meshperf.session.run_identity import RunIdentity, new_run_id

if TYPE_CHECKING:
    from pytest_meshperf.session.mesh_session import MeshSession

STATE_KEY = pytest.StashKey()


class MeshState:
    """One pytest process's view of meshperf: its settings now, its session once a mesh test needs one."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings: Settings = resolve(config)
        self.items = MeshItems()           # xdist controller: the mesh tests the workers collected
        self._session = None
        self._identity: RunIdentity | None = None
        self._handoff: str | None = None   # xdist: where workers say which tests are mesh tests
        self._heard = 0                        # xdist: workers whose collection arrived
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None and "meshperf" in workerinput:
            shared = workerinput["meshperf"]
            self._identity = RunIdentity(shared["run_id"], shared["out_dir"], shared["secret"], shared["started"])
            self._handoff = shared.get("handoff")

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    @property
    def identity(self) -> RunIdentity:
        """The run's id, results folder and secret: chosen once, on the controller (or plain pytest)."""
        if self._identity is None:
            started = time.time()
            out_dir = os.path.abspath(os.path.join(str(self.config.invocation_params.dir),
                                                   self.config.option.meshperf_out))
            self._identity = RunIdentity(new_run_id(started), out_dir, secrets.token_hex(32), started)
        return self._identity

    @property
    def session(self) -> MeshSession | None:
        """The run's MeshSession, made on first need; None until then (``active``)."""
        return self._session

    @property
    def active(self) -> bool:
        return self._session is not None

    def activate(self) -> MeshSession:
        """The MeshSession (made now if need be); a bad setting is pytest's usage error."""
        if self._session is None:
            from pytest_meshperf.session.mesh_session import (
                MeshSession,  # the heavy part of meshperf: only a run with mesh tests pays it
            )
            try:
                self._session = MeshSession(self.config, self.settings, self.identity)
            except MeshperfError as exc:      # a bad inventory, threshold or option; a testbed not buildable
                raise pytest.UsageError(str(exc)) from None
        return self._session

    # -- xdist: which tests are mesh tests, from the workers ---------------------------------------------------
    def workerinput(self) -> dict:
        """Controller: what a worker needs of the run (the hand-off directory is made for the first worker)."""
        if self._handoff is None:
            self._handoff = tempfile.mkdtemp(prefix="meshperf-xdist-")   # 0700: this user's alone
        return dict(self.identity.as_workerinput(), handoff=self._handoff)

    def _collected_path(self, worker_id: str) -> str:
        return os.path.join(self._handoff, f"{worker_id}.json")

    def tell_controller(self, items: MeshItems) -> None:
        """Worker: write which collected tests are mesh tests, for the controller (nothing when there are none)."""
        if not items or self._handoff is None:
            return
        path = self._collected_path(self.config.workerinput.get("workerid", "worker"))
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(items.to_json()))  # json.dumps encodes in C, json.dump in Python
        os.replace(tmp, path)

    def all_workers_collected(self) -> bool:
        """Controller: every worker xdist started has collected.  Only then may the run create anything:
        a worker still starting would take a new results folder into its rootdir (``--mesh-out DIR``)."""
        from xdist.workermanage import parse_tx_spec_config  # here: xdist is optional; this runs only with -n
        return self._heard >= len(parse_tx_spec_config(self.config))

    def hear_worker(self, worker_id: str) -> MeshItems:
        """Controller: the mesh tests a worker collected (empty when it collected none)."""
        self._heard += 1
        if self._handoff is None:
            return MeshItems()
        path = self._collected_path(worker_id)
        try:
            with open(path, encoding="utf-8") as handle:
                heard = MeshItems.from_json(json.load(handle))
        except FileNotFoundError:
            return MeshItems()
        except (OSError, ValueError) as exc:
            raise UsageError(f"meshperf: cannot read what xdist worker {worker_id} collected ({path}): {exc}") from None
        os.unlink(path)
        if not self.items:
            self.items = heard
        return heard

    def close(self) -> None:
        """Controller: remove the hand-off directory (pytest_unconfigure)."""
        if self._handoff is not None and not self.is_worker:
            shutil.rmtree(self._handoff, ignore_errors=True)
            self._handoff = None


def state_of(config: pytest.Config) -> MeshState | None:
    return config.stash.get(STATE_KEY, None)
