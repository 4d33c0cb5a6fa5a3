"""The cluster a run measures: ``--cluster SPEC`` turned into typed, frozen nodes.

Specs:

* ``None`` or ``""``: :data:`DEFAULT_CLUSTER` (``local:3``);
* ``local``: ``local:3``; ``local:N`` with ``2 <= N <= 64``: N nodes on the
  loopback interface (``node1`` .. ``nodeN`` at ``127.0.0.11`` ..);
* anything else: the path of a ``hosts.yaml`` inventory (``~`` expanded,
  relative paths resolved against ``base_dir``)::

      defaults:              # optional; any host key except name/address
        ssh_user: root
        ssh_key: ~/.ssh/id_rsa
      hosts:
        - name: server1
          address: 10.0.1.10    # SSH target: IP, DNS name or ssh_config alias
          role: server          # server | client | both (default both)
          ssh_port: 22
          data_address: 10.1.1.10   # optional: the address tests target
          labels: {zone: a, rack: r1}

Every problem is raised as one :class:`~pytest_meshperf.errors.InventoryError`
whose message is a single line ``<file>:<line>: <where>: <problem>; <fix>``
(``--cluster '<spec>': <problem>; <fix>`` when there is no file to point at).
"""

from __future__ import annotations

import os
import re
from typing import Any

from pytest_meshperf.cluster.fields import HOST_KEYS, ROLES
from pytest_meshperf.cluster.hosts_file import HostsFile
from pytest_meshperf.cluster.model import Cluster, Labels, Node
from pytest_meshperf.errors import InventoryError
from pytest_meshperf.yamlfile import short

__all__ = [
    "DEFAULT_CLUSTER",
    "HOST_KEYS",
    "LOCAL_MAX_NODES",
    "LOCAL_MIN_NODES",
    "ROLES",
    "Cluster",
    "Labels",
    "Node",
    "load_cluster",
    "local_cluster",
]


DEFAULT_CLUSTER = "local:3"
LOCAL_DEFAULT_NODES = 3
LOCAL_MIN_NODES = 2
LOCAL_MAX_NODES = 64


# --------------------------------------------------------------------------
# local clusters
# --------------------------------------------------------------------------


def _local(n: Any, spec: str) -> Cluster:
    if (
        isinstance(n, bool)
        or not isinstance(n, int)
        or not LOCAL_MIN_NODES <= n <= LOCAL_MAX_NODES
    ):
        raise InventoryError(
            f"--cluster {spec!r}: a local cluster needs {LOCAL_MIN_NODES} to {LOCAL_MAX_NODES} nodes, "
            f"got {short(n)}; use local:N with {LOCAL_MIN_NODES} <= N <= {LOCAL_MAX_NODES}"
        )
    nodes = tuple(
        Node(name=f"node{i}", address=f"127.0.0.{10 + i}") for i in range(1, n + 1)
    )
    return Cluster(kind="local", spec=spec, nodes=nodes)


def local_cluster(n: int) -> Cluster:
    """``n`` nodes on loopback: ``node1`` .. ``nodeN`` at ``127.0.0.(10+i)``, role both."""
    return _local(n, f"local:{n}")


def is_testbed_spec(spec: str | None) -> bool:
    """A ``netns:N`` spec: a testbed the run builds (testbed/), not an inventory to load."""
    return bool(spec) and (spec == "netns" or spec.startswith("netns:"))


def load_cluster(spec: str | None, base_dir: str | os.PathLike[str] = ".") -> Cluster:
    """Turn a ``--cluster`` value into a :class:`Cluster`.

    Raises :class:`InventoryError` (one line) for any invalid spec or file.
    """
    if spec is not None and not isinstance(spec, str):
        spec = os.fspath(spec)
    if spec is None or not spec.strip():
        return _local(LOCAL_DEFAULT_NODES, DEFAULT_CLUSTER)
    text = spec.strip()
    if text == "local":
        return _local(LOCAL_DEFAULT_NODES, spec)
    if text.startswith("local:"):
        count = text[len("local:") :]
        if not re.fullmatch(r"[0-9]+", count):
            what = (
                "missing the node count"
                if not count
                else f"{count!r} is not a node count"
            )
            raise InventoryError(
                f"--cluster {text!r}: {what}; use local:N with {LOCAL_MIN_NODES} <= N <= {LOCAL_MAX_NODES}, e.g. local:3"
            )
        return _local(int(count), spec)
    return HostsFile(text, os.fspath(base_dir)).load(spec)




