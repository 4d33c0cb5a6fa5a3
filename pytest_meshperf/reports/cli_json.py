"""The ``--json`` documents of ``meshperf check``, ``status``, ``summary`` and ``compare``.

One JSON document on stdout and nothing else, for scripts and monitoring; its
schema is ``schema/<command>.schema.json`` (docs/cli-json.md).  Every document
starts with ``command`` and ``meshperf_version``; values are in canonical units
(``metrics`` as in mesh.json).  Built from the same results the text output
prints, so the two never disagree.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pytest_meshperf import __version__
from pytest_meshperf.cluster.model import Cluster
from pytest_meshperf.results.rows import Row
from pytest_meshperf.verdicts.compare import Comparison

if TYPE_CHECKING:
    from pytest_meshperf.control.operations import HostResult

_FACT_KEYS = ("python", "hostname", "clock_offset_s", "host_key_check", "rtt_s")
_TOOL_KEYS = ("path", "version", "error", "server_path", "server_version")


def emit(document: dict[str, Any]) -> None:
    json.dump(document, sys.stdout, indent=2, ensure_ascii=True)
    sys.stdout.write("\n")


def _head(command: str) -> dict[str, Any]:
    return {"command": command, "meshperf_version": __version__}


def _cluster(cluster) -> dict[str, Any]:
    return {"spec": cluster.spec, "kind": cluster.kind, "source": cluster.source}


def _tools(tools: dict[str, Any] | None) -> dict[str, Any]:
    return {name: {key: entry.get(key) for key in _TOOL_KEYS if key in entry}
            for name, entry in (tools or {}).items()}


def check_document(cluster: Cluster, results: Sequence[HostResult], clock_spread_s: float | None) -> dict[str, Any]:
    hosts = []
    for r in results:
        facts = r.details or {}
        host = {"name": r.node.name, "address": r.node.address, "ok": r.ok, "message": r.message}
        host.update({key: facts.get(key) for key in _FACT_KEYS})
        host["tools"] = _tools(facts.get("tools"))
        hosts.append(host)
    online = sum(r.ok for r in results)
    return dict(_head("check"), cluster=_cluster(cluster), ok=online == len(results), online=online,
                total=len(results), clock_spread_s=clock_spread_s, hosts=hosts)


def status_document(cluster: Cluster, results: Sequence[HostResult]) -> dict[str, Any]:
    hosts = []
    for r in results:
        health = r.details if r.ok else {}
        load, usage = health.get("load") or {}, health.get("agent_usage") or {}
        hosts.append({"name": r.node.name, "address": r.node.address, "running": r.ok, "message": r.message,
                      "pid": health.get("pid") if r.ok else (r.details or {}).get("pid"),
                      "uptime_s": health.get("uptime_s"),
                      "processes": [{key: p.get(key) for key in ("tool", "role", "pid", "port")}
                                    for p in health.get("processes") or []],
                      "node_cpu_percent": load.get("cpu_percent"), "agent_cpu_s": usage.get("cpu_seconds"),
                      "agent_rss_bytes": usage.get("rss_bytes"), "rpc_rtt_s": health.get("rpc_rtt_s"),
                      "tools": _tools(health.get("tools"))})
    running = sum(r.ok for r in results)
    return dict(_head("status"), cluster=_cluster(cluster), ok=running == len(results), running=running,
                total=len(results), hosts=hosts)


def summary_document(mesh_path: str, nodes: list[str], rows: Sequence[Row], counts: dict[str, int],
                     diagnosis: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    links = [{"test": row.test, "name": row.name, "src": row.src, "dst": row.dst, "status": row.status,
              "metrics": dict(row.metrics), "messages": list(row.messages), "warnings": list(row.warnings),
              "doubtful": list(row.doubtful)}
             for row in rows]
    failed = bool(counts.get("failed") or counts.get("error"))
    return dict(_head("summary"), mesh=os.path.realpath(mesh_path), ok=not failed, nodes=list(nodes),
                counts={status: int(n) for status, n in counts.items()}, links=links, diagnosis=diagnosis)


def compare_document(comparison: Comparison) -> dict[str, Any]:
    changes = [{"test": c.test, "src": c.src, "dst": c.dst, "metric": c.metric, "status": c.status,
                "old": c.old, "new": c.new, "change": c.change, "worse_by": c.worse_by,
                "old_status": c.old_status, "new_status": c.new_status, "old_error": c.old_error,
                "new_error": c.new_error} for c in comparison.changes]
    return dict(_head("compare"), old=comparison.old_path, new=comparison.new_path,
                max_regression=comparison.tolerance,
                metrics=list(comparison.metrics) if comparison.metrics else None,
                ok=not comparison.failed, counts=comparison.counts, changes=changes)
