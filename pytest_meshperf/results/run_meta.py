"""run.json's cluster section: each node as the inventory gave it, with what its agent reported at start."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_meshperf.cluster.model import Cluster

if TYPE_CHECKING:
    from pytest_meshperf.control.controller import Controller


def cluster_meta(cluster: Cluster, controller: Controller | None) -> dict[str, Any]:
    """run.json's cluster: each node as the inventory gave it, and what its agent reported (None: no agents)."""
    nodes = {}
    for node in cluster.nodes:
        endpoint = controller.handles[node.name].endpoint if controller and \
            node.name in controller.handles else {}
        # The address tests really target: an ssh_config alias resolves to its HostName.
        entry = {"address": node.address, "data_address": endpoint.get("data_address", node.data_address),
                 "role": node.role, "labels": dict(node.labels)}
        info = (controller.node_info.get(node.name) if controller else None) or {}
        failure = controller.failed.get(node.name) if controller else None
        if failure:
            entry["unreachable"] = failure
        if info:
            entry["agent"] = {"version": info.get("agent_version"), "pid": info.get("pid"),
                              "hostname": info.get("hostname")}
            facts = info.get("facts") or {}
            entry["clock_offset_s"] = info.get("clock_offset_s")
            if facts:
                entry["ssh"] = {"host_key_check": facts.get("host_key_check"), "python": facts.get("python")}
            entry["tools"] = {name: {"version": t.get("version"), "path": t.get("path"), "error": t.get("error"),
                                     **{key: t[key] for key in ("server_path", "server_version") if key in t}}
                              for name, t in (info.get("tools") or {}).items()}
            entry["resources"] = info.get("resources") or {}
            if info.get("limits"):
                entry["limits"] = info["limits"]
        nodes[node.name] = entry
    return {"kind": cluster.kind, "spec": cluster.spec, "source": cluster.source, "nodes": nodes}
