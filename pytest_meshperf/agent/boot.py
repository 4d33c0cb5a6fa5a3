"""What a node runs first: one command checks the node, verifies what deploy shipped and starts the agent.

``python3 -I -S agent.pyz --expect PATH=SHA256 ... AGENT-OPTIONS`` (the bundle's ``__main__``) prints one
JSON line of facts: python version and interpreter, each ``--tool``'s path and ``--version`` output,
hostname, clock, and which expected files are missing or differ.  Then, if the node can run the agent and
every expected file is in place, it creates the log directory and runs the agent in this same process
(its ready line follows).  Otherwise it exits with ``NEEDS_UPLOAD`` (upload the files, then try again)
or ``CANNOT_RUN`` (python too old, no tool usable: the facts say why).

``--probe`` prints the facts only.  ``meshperf check`` and ``deploy`` send this file's source as
``python3 -I -S -c SOURCE --probe ...``, so a node needs no bundle to be checked.

Why one command: every remote command pays the node's login shell and interpreter start-up
(docs/performance.md).  Why ``-S``: site's ``.pth`` hooks can cost tens of ms per start; only the
site-packages directories are added back, for psutil.  The syntax stays old enough for an old python3
to report its version instead of a SyntaxError.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

MIN_PYTHON = (3, 9)
# How each tool prints its version (tools/*.version_argv): this file also runs as bare source (-c), without
# the package to import them from.
VERSION_ARGS = {"netperf": ["-V"], "netserver": ["-V"]}
# What a usable tool's version output matches (tools/*.VERSION_PATTERN): a tool that ran but printed no
# version is not usable.
VERSION_PATTERNS = {"iperf3": r"iperf\s+(\d+\.\d+(?:\.\d+)?\S*)",
                    "netperf": r"[Nn]etperf version\s+(\d+\.\d+(?:\.\d+)?\S*)"}
# A client tool's server binary (tools/*.SERVER_BINARY), probed with its client: given by ``--tool
# netserver=PATH``, else the one beside the client, else on PATH.
SERVERS = {"netperf": "netserver"}
NEEDS_UPLOAD = 3
CANNOT_RUN = 4
VERSION_TIMEOUT_S = 10


def split_args(argv):
    """(expected files as [(path, sha256)], probe only?, the agent's own arguments)."""
    expect, probe, rest = [], False, []
    args = iter(argv)
    for arg in args:  # bounded: each step consumes at least one argument
        if arg == "--expect":
            path, _, digest = next(args, "").rpartition("=")
            expect.append((path, digest))
        elif arg == "--probe":
            probe = True
        else:
            rest.append(arg)
    return expect, probe, rest


def option_values(argv, name):
    """Every value of ``name VALUE`` in the agent's arguments (the controller writes them this way)."""
    return [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == name]


def sha256_of(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return "missing"


def probe_tool(name, path):
    found = shutil.which(path)
    out = ""
    if found:
        try:  # stdin is the controller's channel (the secret): the tool gets none of it
            out = subprocess.run([found] + VERSION_ARGS.get(name, ["--version"]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=VERSION_TIMEOUT_S).stdout.decode("utf-8", "replace")
        except Exception as exc:  # a tool that does not run is a fact to report, not a crash
            out = "error: %s" % exc
    return {"path": found, "version_output": out[:200]}


def locate_server(client_path, server, given=None):
    """The server binary runs of a client tool use: ``given`` (a name or path), else the one beside the client,
    else ``server`` on PATH; None if there is none."""
    if given:
        return shutil.which(given)
    beside = os.path.join(os.path.dirname(client_path), server)
    return beside if os.access(beside, os.X_OK) else shutil.which(server)


def probe_tools(tools, servers=False):
    """Each client tool's path and version output; with ``servers``, also its server's (as ``server``, with
    ``server_given``: the path asked for, if any)."""
    given = dict(tools)
    found = dict((name, probe_tool(name, path)) for name, path in tools if name not in SERVERS.values())
    for client, server in SERVERS.items():
        if servers and client in found and found[client]["path"]:
            path = locate_server(found[client]["path"], server, given.get(server))
            found[client]["server"] = probe_tool(server, path) if path else {"path": None, "version_output": ""}
            found[client]["server_given"] = given.get(server)
    return found


def facts(tools, expect, servers=False):
    data = {"meshperf_boot": 1, "python": list(sys.version_info[:3]), "executable": sys.executable,
            "hostname": socket.gethostname(), "tools": probe_tools(tools, servers),
            "deploy": [path for path, digest in expect if sha256_of(path) != digest]}
    data["time"] = time.time()  # last: the controller compares it with when the line arrives
    return data


def tools_usable(data):
    """At least one tool works: a node without netperf still measures with iperf3 (and the agent tells a
    netperf test why it cannot run there)."""
    return any(info["path"] and re.search(VERSION_PATTERNS.get(name, "(?!)"), info["version_output"] or "")
               for name, info in data["tools"].items())


def bundle_digest(expect, bundle_path):
    """The expected hash of the bundle this process runs from, or None.  Compared as real paths: the launcher
    hands the bundle over as one, while ``--expect`` names it as the controller wrote it (by default relative
    to the home directory)."""
    here = os.path.realpath(bundle_path)
    return next((digest for path, digest in expect if os.path.realpath(path) == here), None)


def lib_dir(bundle_path, digest):
    """Where the bundle's bytecode-cached copy lives: named after its content (bundle._MAIN looks there)."""
    return os.path.join(os.path.dirname(bundle_path), "lib-" + digest[:16])


def unpack(bundle_path, digest):
    """A plain copy of the bundle, compiled: later starts import it ~30 ms faster than the zip, whose modules
    are compiled again on every start.  Nodes sharing a home directory race harmlessly: one rename wins."""
    lib = lib_dir(bundle_path, digest)
    if os.path.isdir(lib):
        return
    import compileall  # here: only a node's first start unpacks; at the top it would cost every start
    import zipfile  # here: as compileall
    tmp = "%s.tmp-%s-%d" % (lib, socket.gethostname(), os.getpid())
    try:
        with zipfile.ZipFile(bundle_path) as archive:
            archive.extractall(tmp)
        compileall.compile_dir(tmp, quiet=2)
        # Nobody else may write the copy: the launcher refuses to run from a directory others can write.
        for top, dirs, names in os.walk(tmp):
            os.chmod(top, 0o700)
            for name in names:
                os.chmod(os.path.join(top, name), 0o600)
        os.rename(tmp, lib)
    except (OSError, zipfile.BadZipFile):  # someone else's rename won, or no room: the zip works as it is
        shutil.rmtree(tmp, ignore_errors=True)


def add_site_packages():
    """Run with -S: make site-packages importable (psutil) without running site's .pth hooks."""
    import site  # here: only a start with -S needs it
    for path in site.getsitepackages():
        if path not in sys.path and os.path.isdir(path):
            sys.path.append(path)


def main(argv=None):
    expect, probe, agent_argv = split_args(sys.argv[1:] if argv is None else argv)
    tools = [value.partition("=")[::2] for value in option_values(agent_argv, "--tool")]
    data = facts(tools, expect, servers=probe)  # a start skips the server: the agent probes it anyway
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()  # before the agent forks: the line must not be written twice
    if probe:
        return 0
    if tuple(data["python"][:2]) < MIN_PYTHON:
        return CANNOT_RUN
    if data["deploy"]:
        return NEEDS_UPLOAD
    if not tools_usable(data):
        return CANNOT_RUN
    for log in option_values(agent_argv, "--log"):
        os.makedirs(os.path.dirname(log) or ".", mode=0o700, exist_ok=True)
    digest = bundle_digest(expect, sys.argv[0]) if argv is None else None
    if digest:
        unpack(sys.argv[0], digest)  # verified above: its hash is the expected one
    if sys.flags.no_site:
        add_site_packages()
    # The agent runs as ``python -m pytest_meshperf.agent`` would run it (this module imports nothing of the
    # agent: the agent's server imports this module's helpers, not the reverse).
    import runpy  # here: a --probe never runs the agent
    sys.argv = [sys.argv[0]] + list(agent_argv)
    runpy.run_module("pytest_meshperf.agent", run_name="__main__", alter_sys=True)   # exits with its status
    return 0


if __name__ == "__main__":
    sys.exit(main())
