"""Diagnosis: from one test's matrix, name what is sick (a sender, a receiver, a node, a group, a link).

A full mesh that fails shows a node with a slow NIC as N-1 failed pairs in its row.  This module does the
inference a user would do from the heatmap, one metric at a time and direction-aware:

- a link is *low* when it failed a threshold on that metric (its own, a relative check's, the baseline
  gate's), or when it is beyond ``LOW_FACTOR`` of the test's median (below half of it for throughput, above
  twice it for latency; for a stricter cut write a relative threshold);
- each hypothesis has a *scope*, the links it says are low, and a *contrast*, the links it says are fine:
  ``sender N`` (N's outgoing links / its incoming ones), ``receiver N`` (the reverse), ``node N`` (every
  link of N / every other link), ``group L=V`` (links into and out of the group / links inside it, or the
  reverse);
- a hypothesis fits when at least ``MOST`` of its scope is low and at most ``FINE`` of its contrast is; the
  fitting one that explains the most low links still unexplained (minus the fine links it wrongly covers)
  is taken, its links are explained, and so on; a low link no hypothesis explains is a ``link`` finding
  when its ends are mostly fine elsewhere (else no finding names it: the summary lists it apart); a
  failed asymmetry check between two links neither of which is low is an ``asymmetric`` finding.

A finding lists the failed tests it explains; its status is ``failed`` when it explains a failed test,
``doubtful`` when every link it rests on is doubtful (validity.py; it does not fail, unless
``--mesh-doubtful=fail``), and ``notice`` when its links are low against the median only (no threshold
said so: shown, never failed).  Findings never change a pair test's own verdict.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_meshperf.plan.links import link_id
from pytest_meshperf.spec.metrics import MAIN_METRICS, METRICS, format_value
from pytest_meshperf.spec.thresholds import holds

LOW_FACTOR = 0.5    # beyond this share of the test's median (or its inverse, lower-is-better) is low
MOST = 0.6          # a hypothesis's scope: at least this share low
FINE = 0.2          # ... and its contrast at most this share
ELSEWHERE = 0.5     # a link finding: its ends' other links (out of the source, into the destination) at most this low
MIN_LINKS = 2       # a node or group explains at least this many low links (one is a link finding)
# Where a median means something: rates and latencies, not counts that are mostly zero (retransmits, loss).
MEDIAN_METRICS = ("throughput_bps", "throughput_reverse_bps", "transaction_rate", "latency_mean_us",
                  "latency_p50_us", "latency_p90_us", "latency_p99_us")
KINDS = ("sender", "receiver", "node", "group", "link", "asymmetric")
_PRIORITY = {"sender": 0, "receiver": 0, "node": 1, "group": 2}   # equal gains: the narrower claim


@dataclass(frozen=True)
class Link:
    """One measured link's figure on one metric, and what it means for diagnosis."""
    src: str
    dst: str
    value: float
    low: bool
    failed: tuple[str, ...] = ()     # the node ids of the failed tests (pair test, check) this figure is behind
    doubtful: tuple[str, ...] = ()   # validity.py's reasons

    @property
    def id(self) -> str:
        return link_id(self.src, self.dst)


@dataclass
class Finding:
    kind: str                    # KINDS
    subject: str                 # node3, rack=a, node1->node2, node1<->node2
    metric: str
    test: str                    # the test's key in mesh.json
    status: str                  # failed, doubtful, notice
    message: str
    links: list[str]             # the low links it explains
    explains: list[str]          # node ids of the failed tests it explains
    confidence: float            # 0..1: how cleanly scope and contrast separate
    evidence: dict[str, Any]
    doubtful_links: int = 0
    retest: dict[str, Any] | None = None   # retest.py: each link's outcome

    @property
    def title(self) -> str:
        return f"{self.kind} {self.subject}"

    def nodeid(self, main_metric: str | None, base: str | None = None) -> str:
        """The test case: ``<test>::diagnosis[sender node3]`` (the metric added when not the test's main);
        ``base``: the test function's node id as pytest has it (test_mesh.py::test_tcp), else the test key."""
        extra = "" if self.metric == main_metric else f" {self.metric}"
        return f"{base or self.test}::diagnosis[{self.title}{extra}]"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "metric": self.metric, "test": self.test,
                "status": self.status, "message": self.message, "links": list(self.links),
                "explains": list(self.explains), "confidence": self.confidence, "evidence": self.evidence,
                "doubtful_links": self.doubtful_links, "retest": self.retest}


@dataclass
class _Hypothesis:
    kind: str
    subject: str
    scope: frozenset[str]
    contrast: frozenset[str]
    scope_what: str
    contrast_what: str
    headline: str                # "node3 sends poorly" ... the message's start
    each: tuple[frozenset[str], ...] = ()   # parts of the scope that must each be mostly low (a node: out, in)


def is_low(metric: str, value: float, median: float | None) -> bool:
    """Beyond LOW_FACTOR of the median, in the metric's bad direction (only for MEDIAN_METRICS)."""
    if median is None or metric not in MEDIAN_METRICS or median <= 0:
        return False
    if METRICS[metric].higher_is_better:
        return value < LOW_FACTOR * median
    return value > median / LOW_FACTOR


def diagnose(test: str, metric: str, links: Sequence[Link], labels: Mapping[str, Mapping[str, str]],
             asymmetric: Iterable[tuple[str, str, str]] = (), doubtful_fails: bool = False) -> list[Finding]:
    """The findings of one test on one metric.  ``labels``: node -> its inventory labels; ``asymmetric``:
    (src, dst, check node id) of each failed asymmetry check on this metric."""
    by_id = {link.id: link for link in links}
    low = {link.id for link in links if link.low}
    values = [link.value for link in links]
    median = statistics.median(values) if values else None
    findings: list[Finding] = []
    if low:
        unexplained = set(low)
        out: dict[str, set[str]] = {}
        into: dict[str, set[str]] = {}
        for link in links:
            out.setdefault(link.src, set()).add(link.id)
            into.setdefault(link.dst, set()).add(link.id)
        candidates = [h for h in _hypotheses(links, labels, out, into) if _fits(h, low)]
        while candidates:
            best = max(candidates, key=lambda h: (len(h.scope & unexplained) - len(h.scope - low),
                                                  -_PRIORITY[h.kind]))
            if len(best.scope & unexplained) < MIN_LINKS:
                break
            candidates.remove(best)
            order = {lid: i for i, lid in enumerate(by_id)}
            explained = sorted(best.scope & unexplained, key=order.__getitem__)
            unexplained -= best.scope
            findings.append(_finding(test, metric, best, explained, by_id, low, median, doubtful_fails))
        for lid in [lid for lid in by_id if lid in unexplained]:
            found = _link_finding(test, metric, by_id[lid], out, into, low, median, doubtful_fails)
            if found is not None:
                findings.append(found)
    _add_asymmetry(findings, test, metric, asymmetric, by_id, low, doubtful_fails)
    return findings


def _hypotheses(links, labels, outgoing, incoming):
    nodes = list(dict.fromkeys(n for link in links for n in (link.src, link.dst)))
    out = {n: frozenset(outgoing.get(n, ())) for n in nodes}
    into = {n: frozenset(incoming.get(n, ())) for n in nodes}
    everything = frozenset(link.id for link in links)
    found = []
    for n in nodes:
        found += [_Hypothesis("sender", n, out[n], into[n], "outgoing links", "incoming links",
                              f"{n} sends poorly"),
                  _Hypothesis("receiver", n, into[n], out[n], "incoming links", "outgoing links",
                              f"{n} receives poorly"),
                  _Hypothesis("node", n, out[n] | into[n], everything - out[n] - into[n], f"links of {n}",
                              "the other links", f"{n} sends and receives poorly", (out[n], into[n]))]
    for label, groups in _groups(nodes, labels).items():
        for value, members in groups.items():
            inside = frozenset(link.id for link in links if link.src in members and link.dst in members)
            across = frozenset(link.id for link in links if (link.src in members) != (link.dst in members))
            subject = f"{label}={value}"
            found += [_Hypothesis("group", subject, across, inside, f"links into and out of {subject}",
                                  f"links inside {subject}", f"the links between {subject} and the rest are poor"),
                      _Hypothesis("group", subject, inside, across, f"links inside {subject}",
                                  f"links into and out of {subject}", f"the links inside {subject} are poor")]
    return found


def _groups(nodes, labels):
    """label -> value -> its nodes, for labels that split the test's nodes into groups of two or more."""
    result = {}
    for label in sorted({k for n in nodes for k in (labels.get(n) or {})}):
        groups: dict[str, set[str]] = {}
        for n in nodes:
            value = (labels.get(n) or {}).get(label)
            if value is not None:
                groups.setdefault(str(value), set()).add(n)
        kept = {v: frozenset(m) for v, m in groups.items() if len(m) >= 2}
        if len(groups) >= 2 and kept:
            result[label] = kept
    return result


def _share(ids, low):
    return (len(ids & low) / len(ids)) if ids else 0.0


def _fits(h, low):
    """Most of its scope low (and of each of its parts: a node sends *and* receives poorly), little of its
    contrast; without a contrast measured nothing tells it apart.  One low link in a small contrast (3 or 4
    links, where FINE is less than one) is allowed: a single marginal link must not turn a clear sender into
    nothing, or into a node whose other direction is mostly fine."""
    fine = _share(h.contrast, low) <= FINE or (len(h.contrast) >= 3 and len(h.contrast & low) <= 1)
    return len(h.scope & low) >= MIN_LINKS and _share(h.scope, low) >= MOST and bool(h.contrast) and fine and \
        all(_share(part, low) >= MOST for part in h.each)


def _fmt(metric, value):
    return format_value(METRICS[metric], value) if value is not None else "n/a"


def _status(explained_links, doubtful_fails):
    links = list(explained_links)
    doubtful = sum(bool(link.doubtful) for link in links)
    failed = any(link.failed for link in links)
    if links and doubtful == len(links) and not doubtful_fails:
        return "doubtful", doubtful
    return ("failed" if failed or (doubtful and doubtful_fails) else "notice"), doubtful


def _link_entry(link, median):
    return {"link": link.id, "value": link.value,
            "ratio": round(link.value / median, 4) if median else None, "low": link.low,
            "failed": bool(link.failed), "doubtful": list(link.doubtful)}


def _finding(test, metric, h, explained, by_id, low, median, doubtful_fails):
    info = METRICS[metric]
    word = "low" if info.higher_is_better else "high"
    scope_values = [by_id[lid].value for lid in h.scope]
    scope_median = statistics.median(scope_values) if scope_values else None
    s_low, c_low = len(h.scope & low), len(h.contrast & low)
    confidence = _share(h.scope, low) * (1 - _share(h.contrast, low))
    links = [by_id[lid] for lid in explained]
    status, doubtful = _status(links, doubtful_fails)
    contrast = f"{h.contrast_what}: {c_low} of {len(h.contrast)} {word}"
    message = (f"{h.headline}: {s_low} of {len(h.scope)} {h.scope_what} {word} ({info.label} median "
               f"{_fmt(metric, scope_median)} against the test's {_fmt(metric, median)}); {contrast}")
    evidence = {"median": median, "scope_median": scope_median,
                "scope": {"what": h.scope_what, "low": s_low, "of": len(h.scope)},
                "contrast": {"what": h.contrast_what, "low": c_low, "of": len(h.contrast)},
                "links": [_link_entry(link, median) for link in links]}
    return Finding(h.kind, h.subject, metric, test, status, message, explained,
                   _explains(links), round(confidence, 2), evidence, doubtful)


def _explains(links):
    return list(dict.fromkeys(nodeid for link in links for nodeid in link.failed))


def _link_finding(test, metric, link, out, into, low, median, doubtful_fails):
    info = METRICS[metric]
    word = "low" if info.higher_is_better else "high"
    sends = frozenset(out.get(link.src, ())) - {link.id}
    receives = frozenset(into.get(link.dst, ())) - {link.id}
    worst = max(_share(sends, low), _share(receives, low))
    if not (sends or receives) or worst > ELSEWHERE:
        return None   # no other link to compare, or its ends are low elsewhere too: nothing singles this link out
    confidence = 1 - worst
    status, doubtful = _status([link], doubtful_fails)
    message = (f"{link.id} alone is {word}: {info.label} {_fmt(metric, link.value)} against the test's median "
               f"{_fmt(metric, median)}; elsewhere {link.src} sends {word} on {len(sends & low)} of {len(sends)} "
               f"links and {link.dst} receives {word} on {len(receives & low)} of {len(receives)}")
    evidence = {"median": median, "scope_median": link.value,
                "scope": {"what": f"the link {link.id}", "low": 1, "of": 1},
                "contrast": {"what": f"the other links of {link.src} out and {link.dst} in",
                             "low": len((sends | receives) & low), "of": len(sends | receives)},
                "links": [_link_entry(link, median)]}
    return Finding("link", link.id, metric, test, status, message, [link.id], _explains([link]),
                   round(confidence, 2), evidence, doubtful)


def _add_asymmetry(findings, test, metric, asymmetric, by_id, low, doubtful_fails):
    """A failed asymmetry check is explained by the finding of a low link of its pair, else it is a finding
    ``asymmetric A<->B`` of its own (both directions fine on their own, too far apart)."""
    owner = {lid: f for f in findings for lid in f.links}
    pairs: dict[tuple[str, str], list[str]] = {}
    for src, dst, nodeid in asymmetric:
        pairs.setdefault(tuple(sorted((src, dst))), []).append(nodeid)
    for (a, b), nodeids in pairs.items():
        there = [owner[lid] for lid in (link_id(a, b), link_id(b, a)) if lid in owner]
        if there:
            there[0].explains.extend(n for n in nodeids if n not in there[0].explains)
            if there[0].status == "notice":
                there[0].status = "failed"
            continue
        links = [by_id[lid] for lid in (link_id(a, b), link_id(b, a)) if lid in by_id]
        status, doubtful = _status(links, doubtful_fails)
        status = "failed" if status == "notice" else status
        shown = ", ".join(f"{link.id} {_fmt(metric, link.value)}" for link in links)
        findings.append(Finding(
            "asymmetric", f"{a}<->{b}", metric, test, status,
            f"{a}<->{b} is asymmetric: {shown}, each fine on its own", [link.id for link in links],
            list(nodeids), 1.0, {"median": None, "scope_median": None,
                                 "scope": {"what": f"both directions of {a}<->{b}", "low": 0, "of": len(links)},
                                 "contrast": {"what": "", "low": 0, "of": 0},
                                 "links": [_link_entry(link, None) for link in links]}, doubtful))


def main_metric(metrics: Iterable[str]) -> str | None:
    present = set(metrics)
    return next((m for m in MAIN_METRICS if m in present), None)


@dataclass
class TestFigures:
    """One test's journaled figures, gathered for diagnosis (from_records)."""
    test: str
    name: str
    links: dict[str, list[Link]] = field(default_factory=dict)               # metric -> its links
    asymmetric: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    main_metric: str | None = None
    base: str | None = None      # the test function's pytest node id, without the pair (its findings' cases)
    relative: dict[str, set[tuple[str, float]]] = field(default_factory=dict)   # metric -> (op, K) of K*median
    medians: dict[str, float] = field(default_factory=dict)                    # metric -> the test's median

    def is_low(self, metric: str, value: float) -> bool:
        """Whether a new figure (a re-test's) is low against this test: beyond LOW_FACTOR of its median, or
        failing one of its relative thresholds against that median."""
        median = self.medians.get(metric)
        if median is None:
            return False
        return is_low(metric, value, median) or any(not holds(value, op, k * median)
                                                    for op, k in self.relative.get(metric, ()))

    def findings(self, labels: Mapping[str, Mapping[str, str]], doubtful_fails: bool = False) -> list[Finding]:
        found = []
        for metric in self.links:
            found += diagnose(self.test, metric, self.links[metric], labels, self.asymmetric.get(metric, ()),
                              doubtful_fails)
        return found


def from_records(records: Iterable[Mapping[str, Any]]) -> dict[str, TestFigures]:
    """Test key -> its figures, from journal records (pair measurements and check verdicts, checks.py);
    the first record of a key wins, as in assembly."""
    pairs: dict[str, dict[str, Mapping[str, Any]]] = {}
    checks: dict[str, dict[str, Mapping[str, Any]]] = {}
    for record in records:
        if record.get("kind") == "check":
            checks.setdefault(record.get("checks", ""), {}).setdefault(link_id(record["src"], record["dst"]), record)
        elif not record.get("kind"):
            pairs.setdefault(record["test"], {}).setdefault(link_id(record["src"], record["dst"]), record)
    tests = {}
    for test, by_link in pairs.items():
        tests[test] = _figures(test, by_link, checks.get(test, {}))
    return tests


def function_nodeid(nodeid: str, pair_id: str) -> str:
    """A pair test's node id without its pair: ``m.py::test_tcp[node1->node2]`` -> ``m.py::test_tcp`` (other
    parametrization ids stay: ``[udp-node1->node2]`` -> ``[udp]``)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return nodeid
    head, _, ids = nodeid[:-1].partition("[")
    rest = ids.replace(pair_id, "", 1).strip("-").replace("--", "-")
    return f"{head}[{rest}]" if rest else head


def _failed_metrics(record):
    """metric -> failed: its own thresholds' and the baseline's failures, by metric."""
    failed = {t.get("metric") for t in record.get("thresholds") or [] if t.get("passed") is False}
    baseline = (record.get("baseline") or {}).get("metrics") or {}
    failed |= {m for m, verdict in baseline.items() if isinstance(verdict, dict) and verdict.get("passed") is False}
    return failed


def _figures(test, by_link, checks):
    measured = {lid: r for lid, r in by_link.items() if r.get("status") != "error" and r.get("metrics")}
    first = next(iter(by_link.values()))
    figures = TestFigures(test, first.get("name", test))
    figures.base = function_nodeid(first.get("nodeid") or "", link_id(first["src"], first["dst"])) or None
    figures.main_metric = main_metric(m for r in measured.values() for m in r["metrics"])
    failed_checks: dict[str, dict[str, str]] = {}   # metric -> link -> the node id of its failed relative check
    for lid, check in checks.items():
        for verdict in check.get("thresholds") or []:
            if verdict.get("reference") == "median" and verdict.get("metric") in METRICS and \
                    isinstance(verdict.get("value"), (int, float)) and verdict.get("op"):
                figures.relative.setdefault(verdict["metric"], set()).add((verdict["op"], float(verdict["value"])))
            if verdict.get("passed") is not False:
                continue
            if verdict.get("reference") == "asymmetry":
                figures.asymmetric.setdefault(verdict.get("metric") or "", []).append(
                    (check["src"], check["dst"], check.get("nodeid", "")))
            else:
                failed_checks.setdefault(verdict.get("metric") or "", {})[lid] = check.get("nodeid", "")
    metrics = {figures.main_metric} if figures.main_metric else set()
    for r in measured.values():
        metrics |= _failed_metrics(r) & set(r["metrics"])
    metrics |= {m for m in failed_checks if m} | {m for m in figures.asymmetric if m}
    for metric in [m for m in METRICS if m in metrics]:
        values = [r["metrics"][metric] for r in measured.values() if metric in r["metrics"]]
        median = statistics.median(values) if values else None
        if median is not None:
            figures.medians[metric] = median
        links = []
        for lid, r in measured.items():
            if metric not in r["metrics"]:
                continue
            failed = ([r.get("nodeid", "")] if r.get("status") == "failed" and metric in _failed_metrics(r) else [])
            if lid in failed_checks.get(metric, {}):
                failed.append(failed_checks[metric][lid])
            value = r["metrics"][metric]
            links.append(Link(r["src"], r["dst"], value, bool(failed) or is_low(metric, value, median),
                              tuple(failed), tuple(r.get("doubtful") or ())))
        figures.links[metric] = links
    return figures
