"""The node agent daemon: parse its arguments, start listening, report the port, serve until stopped.

Run as ``python3 -m pytest_meshperf.agent`` (``__main__.py``).

The per-run secret is read from the first line of standard input, so it never
appears in a process list.  Once listening, the agent prints one JSON line on
standard output (``{"meshperf_agent": 1, "port": P, "pid": N, ...}``) and
writes nothing more there; it logs to ``--log`` (default: standard error).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence

from pytest_meshperf import __version__
from pytest_meshperf.agent import protocol, resources
from pytest_meshperf.agent.server import Agent


def _port_range(text):
    low, _, high = text.partition("-")
    try:
        low, high = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError("port range must look like 5201-5999")
    if not 1 <= low <= high <= 65535:
        raise argparse.ArgumentTypeError("port range must lie within 1-65535")
    return low, high


def _loopback(text):
    try:
        if not ipaddress.ip_address(text).is_loopback:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"the agent listens on a loopback address only (got {text!r})")
    return text


def _tool_path(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError("use TOOL=PATH, e.g. iperf3=/usr/bin/iperf3")
    return name, path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m pytest_meshperf.agent",
                                     description="meshperf node agent (reads its key from stdin)")
    parser.add_argument("--node", required=True, help="the node's name in the inventory")
    parser.add_argument("--listen", type=_loopback, default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="RPC port (0: any free port)")
    parser.add_argument("--lease", type=float, default=60.0,
                        help="seconds without a word from the controller before the agent stops everything and exits")
    parser.add_argument("--port-range", type=_port_range, default=(5201, 5999), help="ports for tool servers")
    parser.add_argument("--max-processes", type=int, default=64, help="cap on concurrent tool processes")
    parser.add_argument("--max-send", type=int, default=1, help="measurements this node may send at once")
    parser.add_argument("--max-recv", type=int, default=1, help="measurements this node may receive at once")
    parser.add_argument("--tool", type=_tool_path, action="append", default=[], metavar="TOOL=PATH",
                        help="path of a tool binary (default: found on PATH)")
    parser.add_argument("--state-dir", help="where process output is kept until collected (default: a temporary folder)")
    parser.add_argument("--log", help="log file (default: standard error)")
    parser.add_argument("--watch-stdin", action="store_true",
                        help="also stop when standard input closes (the controller's pipe)")
    parser.add_argument("--daemon", action="store_true",
                        help="detach (for SSH starts): print the ready line, then keep running in the background")
    parser.add_argument("--version", action="version", version=f"meshperf-agent {__version__} (protocol "
                                                               f"{protocol.PROTOCOL_VERSION})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(filename=args.log, level=logging.INFO,
                        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    secret = sys.stdin.readline().strip()
    if len(secret) < 32:
        sys.stderr.write("meshperf agent: expected its key (at least 32 characters) on standard input\n")
        return 2
    ready_out = sys.stdout
    if args.daemon:
        ready_out = _daemonize()
    own_state = args.state_dir is None
    try:
        state_dir = args.state_dir or tempfile.mkdtemp(prefix="meshperf-agent-")
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        agent = Agent(args.node, secret, state_dir, port_range=args.port_range, lease_s=args.lease,
                      max_processes=args.max_processes, tool_paths=dict(args.tool),
                      max_send=args.max_send, max_recv=args.max_recv, log_path=args.log)
        port = agent.serve(args.listen, args.port)
    except Exception as exc:  # a detached daemon's stderr is gone: say why through the ready channel
        logging.getLogger("meshperf.agent").exception("cannot start")
        ready_out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        ready_out.flush()
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda s, f: threading.Thread(
            target=agent.shutdown, args=(f"signal {s}",), daemon=True).start())
    if args.watch_stdin:
        def watch():
            while sys.stdin.readline():
                pass
            agent.shutdown("standard input closed: the controller is gone")
        threading.Thread(target=watch, name="stdin", daemon=True).start()
    ready_out.write(json.dumps({"meshperf_agent": protocol.PROTOCOL_VERSION, "version": __version__,
                                "node": args.node, "port": port, "pid": os.getpid(),
                                "psutil": resources.psutil is not None}) + "\n")  # agent.info lists NICs: dearer
    ready_out.flush()
    if args.daemon:
        ready_out.close()
    logging.getLogger("meshperf.agent").info("node %s listening on %s:%d", args.node, args.listen, port)
    try:
        agent.run_forever()
    finally:
        if own_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0


def _daemonize():
    """Detach from the SSH session; returns the pipe on which the daemon reports readiness.

    Forking happens before the agent starts any thread.  The first process
    waits for the daemon's ready line, prints it and exits, so the SSH command
    returns only once the agent listens (or with the reason it did not).
    """
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            line = pipe.readline()
        if not line:
            sys.stderr.write("meshperf agent: the daemon exited before it was ready (see its log)\n")
            os._exit(1)
        if '"error"' in line:
            sys.stderr.write(f"meshperf agent: {json.loads(line)['error']}\n")
            os._exit(1)
        sys.stdout.write(line)
        sys.stdout.flush()
        os._exit(0)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return os.fdopen(write_fd, "w")

