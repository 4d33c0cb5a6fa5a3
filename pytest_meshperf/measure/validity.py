"""Whether a measurement can be trusted as a figure of the network: ``doubtful`` and its reasons.

A figure is doubtful when it may have measured something else: a CPU (the agents' monitor saw the sender
or receiver CPU-bound), a disturbance inside the measurement (its instances disagree wildly), or a tool that
said something went wrong while still printing numbers.  A doubtful measurement keeps its verdict (unless
``--mesh-doubtful=fail``); diagnosis.py never fails a finding built on doubtful links only.
"""
from __future__ import annotations

from pytest_meshperf.measure.measurement import Measurement, cpu_bound_warnings
from pytest_meshperf.spec.metrics import MAIN_METRICS, METRICS, format_value

# Instances of one pair disagree "wildly" when the lowest is below this share of the highest: pinned to their
# own cores over the same link, they split it about evenly (2 instances at 200 Mbit/s: 0.96 here).
DISAGREE_RATIO = 0.5


def assess(result: Measurement) -> None:
    """Set ``result.warnings`` (CPU-bound sides) and ``result.doubtful`` (every reason not to trust it)."""
    result.warnings = cpu_bound_warnings(result)
    result.doubtful = list(result.warnings) + disagreement(result) + tool_complaints(result)


def disagreement(result: Measurement) -> list[str]:
    """The instances' main metric spread beyond DISAGREE_RATIO, as one reason (none for a single instance)."""
    metric = next((m for m in MAIN_METRICS if all(m in inst.metrics for inst in result.instances)), None)
    if metric is None or len(result.instances) < 2:
        return []
    values = [inst.metrics[metric] for inst in result.instances]
    low, high = min(values), max(values)
    if high <= 0 or (low / high >= DISAGREE_RATIO):
        return []
    shown = ", ".join(format_value(METRICS[metric], v) for v in values)
    return [f"its {len(values)} instances disagree on {METRICS[metric].label} ({shown}; the lowest is "
            f"{100 * low / high:.0f}% of the highest): something disturbed this measurement"]


def tool_complaints(result: Measurement) -> list[str]:
    """What the tool said went wrong beside the numbers it printed: a client's non-zero exit status, a server
    that reported an error."""
    reasons = []
    for inst in result.instances:
        if inst.exit_code not in (None, 0):
            reasons.append(f"instance {inst.instance}: {result.tool} exited with status {inst.exit_code} "
                           "although it printed results")
        raw = (inst.server or {}).get("raw")
        if isinstance(raw, dict) and raw.get("error"):
            reasons.append(f"instance {inst.instance}: the server's {result.tool} reported an error: "
                           f"{str(raw['error'])[:200]}")
    return reasons
