"""Measurement tools, one module each: how to start them and how to read their output.

Standard library only: the agent imports these modules on the nodes to build
command lines (always argument lists, never shell strings), and the controller
imports them to turn raw output into metrics.  Every module has the same
interface (NAME, DEFAULT_BINARY, INSTALL_HINT, CLIENT_PARAMS, native_params,
server_argv, client_argv, expected_runtime_s, version_argv, parse_version,
load_output, metrics_from_json, client_ports, tool_version); SHARED_SERVER says
its server is long-lived and shared by every measurement (netperf's netserver)
rather than one-off (iperf3 -s -1).
"""
from __future__ import annotations

from types import ModuleType

from pytest_meshperf.tools import iperf3, netperf

TOOLS = {iperf3.NAME: iperf3, netperf.NAME: netperf}


def get_tool(name: str) -> ModuleType:
    try:
        return TOOLS[name]
    except KeyError:
        raise ValueError(f"unknown tool {name!r}; known tools: {', '.join(sorted(TOOLS))}")
