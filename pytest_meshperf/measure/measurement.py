"""What one measurement is: the pair, its instances, its metrics, its verdict.

``Measurement`` is what ``measure()`` returns to a test and what the journal
stores (``to_record``).  Pair-level metrics combine the instances' metrics
(``combine_metrics``), so several processes per pair add up correctly.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pytest_meshperf.errors import ClientRun
from pytest_meshperf.plan.links import link_id
from pytest_meshperf.spec.thresholds import Threshold, check_all
from pytest_meshperf.spec.units import iso

STATUS_PASSED = "passed"
STATUS_FAILED = "failed"
STATUS_ERROR = "error"


@dataclass
class Instance:
    """One tool process of a measurement, with everything needed to trust or redo it."""
    instance: int
    pid: int | None
    client_port: int | None
    server_port: int | None
    start: float | None          # epoch seconds, client start
    end: float | None
    command: str
    metrics: dict[str, float]
    raw: Any                         # the client's complete tool output (iperf3 JSON)
    server: dict[str, Any] = field(default_factory=dict)   # server pid, port, command, core, raw output
    cpu: int | None = None        # the core the client was pinned to (None: not pinned)
    exit_code: int | None = None  # the client's exit status (None: killed by a signal, or not known)


@dataclass
class Measurement:
    src: str
    dst: str
    test: str                        # the test's key in the result file
    nodeid: str
    tool: str
    params: dict[str, Any]
    status: str = STATUS_PASSED
    metrics: dict[str, float] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    thresholds: list[dict[str, Any]] = field(default_factory=list)   # ThresholdResult.to_dict()
    error: str | None = None
    tool_version: str | None = None
    round: int | None = None
    started: float | None = None
    finished: float | None = None
    node_load: dict[str, Any] = field(default_factory=dict)   # "src"/"dst": the node's CPU and memory meanwhile
    doubtful: list[str] = field(default_factory=list)         # validity.py: why this figure may not be the network's
    warnings: list[str] = field(default_factory=list)         # e.g. a CPU-bound sender: trust the figure less
    group: dict[str, Any] | None = None                    # burst/incast: the flows started together, skew
    baseline: dict[str, Any] | None = None                 # --mesh-baseline: found, its values, the verdicts
    client: ClientRun | None = None                        # status error after a client ran: what it did

    @property
    def pair(self) -> str:
        return link_id(self.src, self.dst)

    @property
    def throughput_bps(self) -> float | None:
        return self.metrics.get("throughput_bps")

    @property
    def retransmits(self) -> float | None:
        return self.metrics.get("retransmits")

    @property
    def jitter_ms(self) -> float | None:
        return self.metrics.get("jitter_ms")

    @property
    def lost_percent(self) -> float | None:
        return self.metrics.get("lost_percent")

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain data, as ``dataclasses.asdict`` gives them, but sharing the nested dicts and
        lists (the tools' raw output above all) rather than deep-copying them: they are only read from here on.
        On a 64-node round asdict cost more than the round's journal writes.  The dicts that ``to_record``
        rewrites (group, client, each instance) are copies."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["instances"] = [{f.name: getattr(inst, f.name) for f in fields(inst)} for inst in self.instances]
        record["group"] = dict(self.group) if self.group is not None else None
        record["client"] = asdict(self.client) if self.client is not None else None
        return record

    def to_record(self) -> dict[str, Any]:
        """The journal line: JSON-able, times as ISO 8601 UTC strings."""
        record = self.as_dict()
        record["started"], record["finished"] = iso(self.started), iso(self.finished)
        record["metrics"] = finite(record["metrics"])
        if record["group"]:
            record["group"]["start_at"] = iso(record["group"]["start_at"])
        if record["client"]:
            record["client"]["started"], record["client"]["ended"] = iso(self.client.started), iso(self.client.ended)
        for inst in record["instances"]:
            inst["start"], inst["end"] = iso(inst["start"]), iso(inst["end"])
            inst["metrics"] = finite(inst["metrics"])
        return record


def record_of(result: Measurement, name: str) -> dict[str, Any]:
    """The journal line of a judged measurement of the test function ``name``."""
    record = result.to_record()
    record["name"] = name
    return record


def finite(metrics: dict[str, float]) -> dict[str, float]:
    """Drop NaN and infinities: they are not JSON, and a metric that is not a number was not measured."""
    return {name: value for name, value in metrics.items() if math.isfinite(value)}


CPU_BOUND_PERCENT = 90.0   # a tool process (or its pinned core) this busy on average: CPU-bound
STARVED_FRACTION = 0.5     # or a core saturated in this share of the samples ...
STARVED_PROCESS_PERCENT = 25.0   # ... while the tool itself worked this hard (not a bitrate-capped flow)


def cpu_bound_warnings(result: Measurement) -> list[str]:
    """Why this measurement may have measured a CPU rather than the network (from the agents' monitoring).

    A side is CPU-bound when its tool process used at least 90% of a core over its life, when the
    core it was pinned to was that busy, or when the node's cores were saturated most of the time while
    its tool worked hard (then it competed for the CPU). A saturated core alone is not enough: on a
    shared machine it may be somebody else's, next to a flow that a bitrate keeps idle."""
    warnings = []
    for end, name, node in (("src", "sender", result.src), ("dst", "receiver", result.dst)):
        load = result.node_load.get(end) or {}
        process = load.get("process_cpu_percent")
        pinned = load.get("pinned_core")
        means = load.get("core_busy_mean_percent") or []
        pinned_busy = means[pinned] if pinned is not None and pinned < len(means) else None
        starved = (load.get("saturated_fraction") or 0) >= STARVED_FRACTION and \
            (process or 0) >= STARVED_PROCESS_PERCENT
        if (process or 0) >= CPU_BOUND_PERCENT or (pinned_busy or 0) >= CPU_BOUND_PERCENT or starved:
            what = f"its {result.tool} used {process:.0f}% of a core" if process is not None else \
                f"its {result.tool}'s core"
            core = f"core {pinned} {pinned_busy:.0f}% busy on average" if pinned_busy is not None else \
                f"a core saturated in {100 * (load.get('saturated_fraction') or 0):.0f}% of the samples"
            warnings.append(f"{name} {node} was CPU-bound ({what}; {core}, softirq peak "
                            f"{load.get('softirq_peak_percent') or 0:.0f}%): this measured the CPU, not the network")
    return warnings


def judge(result: Measurement, thresholds: Sequence[Threshold], baseline: Any = None,
          doubtful_fails: bool = False) -> list[str]:
    """Check ``thresholds`` (and the ``baseline`` gate, baseline.py) against a measurement, record every
    verdict in it, set its status; returns the failure messages.  An errored measurement's thresholds are
    recorded as not evaluated.  With ``doubtful_fails`` (--mesh-doubtful=fail) a doubtful figure fails too."""
    if result.status == STATUS_ERROR:
        result.thresholds = [{**t.to_dict(), "measured": None, "passed": None,
                              "message": "not evaluated: no measurement"} for t in thresholds if not t.deferred]
        if baseline is not None:
            baseline.check(result)   # records what the baseline had; judges nothing
        return []
    verdicts = check_all(thresholds, result.metrics)
    result.thresholds = [v.to_dict() for v in verdicts]
    failed = [v.message for v in verdicts if v.passed is False]
    if baseline is not None:
        failed += baseline.check(result)
    if doubtful_fails and result.doubtful:
        failed.append("doubtful (--mesh-doubtful=fail): " + "; ".join(result.doubtful))
    result.status = STATUS_FAILED if failed else STATUS_PASSED
    return failed


def combine_metrics(per_instance: list[dict[str, float]]) -> dict[str, float]:
    """Pair metrics from instance metrics: rates and counts add up, loss is recomputed, the rest is the worst."""
    if len(per_instance) == 1:
        return dict(per_instance[0])
    combined: dict[str, float] = {}
    keys = {key for metrics in per_instance for key in metrics}
    for key in keys:
        values = [m[key] for m in per_instance if key in m]
        if key.endswith("_bps") or key in ("retransmits", "transaction_rate", "lost_packets", "packets"):
            combined[key] = sum(values)
        else:  # latency, jitter, CPU: the worst instance speaks for the pair
            combined[key] = max(values)
    if combined.get("packets"):
        combined["lost_percent"] = 100.0 * combined.get("lost_packets", 0.0) / combined["packets"]
    return combined
