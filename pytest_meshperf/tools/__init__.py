"""Measurement tools, one module each: how to start them and how to read their output.

Standard library only: the agent imports these modules on the nodes to build
command lines (always argument lists, never shell strings), and the controller
imports them to turn raw output into metrics.
"""

from . import iperf3

TOOLS = {iperf3.NAME: iperf3}


def get_tool(name):
    try:
        return TOOLS[name]
    except KeyError:
        raise ValueError("unknown tool %r; known tools: %s" % (name, ", ".join(sorted(TOOLS))))
