"""Remote nodes over SSH, with Fabric: check, deploy, start and stop agents.

One ``SshNode`` holds one SSH connection per node and uses it for everything
(commands, file transfer, the agent's channel); it is never opened per command.
Every remote command is an argument list joined with ``shlex.quote``: nothing
from an inventory reaches a remote shell unquoted.

Host keys: Fabric accepts any key out of the box (paramiko's AutoAddPolicy, no
known_hosts loaded).  Here keys are verified against known_hosts unless the user
opts out explicitly (``--ssh-host-keys``, the inventory's ``host_key_check``, or
ssh_config's ``StrictHostKeyChecking``): ``yes`` (default), ``accept-new`` (add
unknown keys, refuse changed ones, as OpenSSH means it) or ``off``.
"""

import io
import logging
import os
import posixpath
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import paramiko
from fabric import Config, Connection

from .. import bundle as agent_bundle
from ..errors import TransportError
from ..rpc import tcp_connector
from . import AgentHandle
from .local import limit_args
from .tunnel import Tunnel

log = logging.getLogger("meshperf.ssh")

REMOTE_HOME_DIR = ".meshperf"
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
HOST_KEY_CHECKS = ("yes", "accept-new", "off")
_known_hosts_lock = threading.Lock()


@dataclass
class SshOptions:
    """Run-wide SSH settings; per-host inventory keys override some of them."""
    host_key_check: Optional[str] = None      # None: inventory key, then ssh_config, then "yes"
    known_hosts: Optional[str] = None         # None: ssh_config UserKnownHostsFile, then ~/.ssh/known_hosts
    ssh_config: Optional[str] = None          # None: ~/.ssh/config (as OpenSSH)
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    tool_paths: Dict[str, str] = field(default_factory=dict)    # tool -> path on every node (--iperf3)
    local_tools: Dict[str, str] = field(default_factory=dict)   # tool -> local binary to upload (--local-iperf3)
    echo: Optional[Callable[[str], None]] = None                # -v: show every remote command
    remote_dir: str = REMOTE_HOME_DIR                           # on each node; relative paths are in the home


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH's accept-new: remember an unknown key; a changed key still fails (paramiko checks that first)."""

    def __init__(self, path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        with _known_hosts_lock:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write("%s %s %s\n" % (hostname, key.get_name(), key.get_base64()))
        log.info("accept-new: added %s key of %s to %s", key.get_name(), hostname, self.path)


class SshNode:
    def __init__(self, node, options: SshOptions, nodes_by_name=None):
        self.node = node
        self.options = options
        self._nodes_by_name = nodes_by_name or {}
        self.conn: Optional[Connection] = None
        self.host_key_check = None
        self.known_hosts = None
        self._forward = None
        self.agent_pid = None
        self._prepared = {}        # remote path -> sha256 or 'missing', from check(prepare=True)
        self._prepared_dirs = set()

    # -- connecting ------------------------------------------------------------
    def _config(self):
        overrides = {"load_ssh_configs": True, "timeouts": {"connect": int(self.options.connect_timeout_s)}}
        if self.options.ssh_config:
            overrides["ssh_config_path"] = self.options.ssh_config
        return Config(overrides=overrides)

    def _connection(self, node, gateway=None):
        kwargs = {"banner_timeout": self.options.connect_timeout_s, "auth_timeout": self.options.connect_timeout_s}
        if node.ssh_key:
            kwargs["key_filename"] = [node.ssh_key]
        conn = Connection(node.address, user=node.ssh_user, port=node.ssh_port, config=self._config(),
                          connect_kwargs=kwargs, connect_timeout=int(self.options.connect_timeout_s),
                          gateway=gateway)
        return conn, self._apply_host_key_policy(conn, node)

    def _apply_host_key_policy(self, conn, node):
        """Set ``conn``'s (and its jump hosts') host key policy; returns (check, known_hosts path)."""
        check = self.options.host_key_check or node.host_key_check
        if check is None:
            strict = str(conn.ssh_config.get("stricthostkeychecking", "yes")).lower()
            check = {"no": "off", "off": "off", "accept-new": "accept-new"}.get(strict, "yes")
        known = self.options.known_hosts
        if known is None:
            files = conn.ssh_config.get("userknownhostsfile")
            known = (files.split()[0] if isinstance(files, str) else files[0]) if files else "~/.ssh/known_hosts"
        known = os.path.expanduser(known)
        client = conn.client
        if check == "off":
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            if os.path.exists(known):
                client.load_host_keys(known)
            client.set_missing_host_key_policy(paramiko.RejectPolicy() if check == "yes" else _AcceptNewPolicy(known))
        if isinstance(conn.gateway, Connection):  # a ProxyJump hop is verified like any host
            self._apply_host_key_policy(conn.gateway, node)
        return check, known

    def _gateway(self):
        jump = self.node.ssh_jump
        if not jump:
            return None  # Fabric reads ProxyJump from ssh_config by itself
        if jump in self._nodes_by_name:
            return self._connection(self._nodes_by_name[jump])[0]
        user, _, rest = jump.rpartition("@")
        host, port = rest, None
        if rest.count(":") == 1:
            host, port = rest.split(":")
            port = int(port)
        hop = type(self.node)(name=self.node.name + "-jump", address=host, ssh_user=user or self.node.ssh_user,
                              ssh_port=port, ssh_key=self.node.ssh_key, host_key_check=self.node.host_key_check)
        return self._connection(hop)[0]

    @property
    def where(self):
        return "%s (%s)" % (self.node.name, self.node.address)

    def connect(self):
        if self.conn is not None and self.conn.is_connected:
            return self.conn
        self.conn, (self.host_key_check, self.known_hosts) = self._connection(self.node, gateway=self._gateway())
        try:
            self.conn.open()
        except paramiko.BadHostKeyException as exc:
            self.close()
            raise TransportError(
                "%s: HOST KEY CHANGED: the %s key it presents is not the one %s holds for %s; no connection "
                "was made. If the host was reinstalled, remove the old key (ssh-keygen -f %s -R %s) and connect "
                "again; otherwise someone may be intercepting the connection"
                % (self.where, exc.key.get_name(), self.known_hosts, exc.hostname, shlex.quote(self.known_hosts),
                   shlex.quote(exc.hostname)))
        except paramiko.SSHException as exc:
            message = "%s: %s" % (self.where, _explain(exc, self))
            self.close()
            raise TransportError(message)
        except (OSError, EOFError) as exc:
            self.close()
            raise TransportError("%s: cannot connect to port %s: %s" % (
                self.where, self.node.ssh_port or 22, getattr(exc, "strerror", None) or exc or type(exc).__name__))
        transport = self.conn.transport
        transport.set_keepalive(15)
        return self.conn

    # -- commands ----------------------------------------------------------------
    def run(self, argv: List[str], timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True):
        """Run ``argv`` on the node (quoted, never a shell string from the inventory); returns the Result."""
        command = " ".join(shlex.quote(str(a)) for a in argv)
        if self.options.echo:
            shown = " ".join("'<script: %d lines>'" % (str(a).count("\n") + 1) if "\n" in str(a)
                             else shlex.quote(str(a)) for a in argv)
            self.options.echo("%s$ %s" % (self.node.name, shown))
        return self._run_command(command, timeout_s, check)

    def _run_command(self, command: str, timeout_s: float, check: bool):
        conn = self.connect()
        try:
            result = conn.run(command, hide=True, warn=True, timeout=timeout_s, in_stream=False, pty=False)
        except Exception as exc:  # invoke's CommandTimedOut and channel errors
            raise TransportError("%s: %r failed: %s" % (self.where, command, exc))
        if check and result.exited != 0:
            raise TransportError("%s: %r exited %s: %s" % (self.where, command, result.exited,
                                                           (result.stderr or result.stdout).strip()[-300:]))
        return result

    # -- node facts ---------------------------------------------------------------
    def python(self):
        return self.node.python or getattr(self, "_python", None) or "python3"

    def check(self, clock=False, prepare=False):
        """What a node offers: python3 version, tool versions (and with ``clock``, its clock offset).
        With ``prepare``, the same command also creates the remote directories and hashes what deploy would
        ship, so starting an agent costs two remote commands (probe, launch) plus uploads when needed.
        Raises TransportError."""
        facts = {"host_key_check": self.host_key_check}
        probe = ("import sys, time, shutil, subprocess, json\n"
                 "tools = {}\n"
                 "for name, path in json.loads(sys.argv[1]).items():\n"
                 "    found = shutil.which(path)\n"
                 "    out = ''\n"
                 "    if found:\n"
                 "        try:\n"
                 "            out = subprocess.run([found, '--version'], stdout=subprocess.PIPE,"
                 " stderr=subprocess.STDOUT, timeout=10).stdout.decode('utf-8', 'replace')\n"
                 "        except Exception as exc:\n"
                 "            out = 'error: %s' % exc\n"
                 "    tools[name] = {'path': found, 'version_output': out[:200]}\n"
                 "import hashlib, os\n"
                 "prep = json.loads(sys.argv[2])\n"
                 "for d in prep['dirs']:\n"
                 "    os.makedirs(d, exist_ok=True)\n"
                 "hashes = {}\n"
                 "for p in prep['hash']:\n"
                 "    try:\n"
                 "        hashes[p] = hashlib.sha256(open(p, 'rb').read()).hexdigest()\n"
                 "    except OSError:\n"
                 "        hashes[p] = 'missing'\n"
                 "print(json.dumps({'python': list(sys.version_info[:3]), 'time': time.time(), 'tools': tools,"
                 " 'hostname': __import__('socket').gethostname(), 'executable': sys.executable,"
                 " 'hashes': hashes}))\n")
        import json
        tools = {"iperf3": self.tool_path("iperf3")}
        prep = {"dirs": [], "hash": []}
        if prepare:
            paths = [item[3] for item in self.shipments()]
            prep = {"dirs": sorted({posixpath.dirname(p) for p in paths} | {self.log_dir()}), "hash": paths}
        started = time.time()
        result = self.run([self.python(), "-I", "-c", probe, json.dumps(tools), json.dumps(prep)], check=False)
        arrived = time.time()
        facts["rtt_s"] = round(arrived - started, 4)
        if result.exited != 0:
            text = (result.stderr or result.stdout).strip()
            if result.exited == 127 or "not found" in text:
                raise TransportError("%s: %s not found; install python3 (3.9 or newer) on the node or set "
                                     "the inventory key python" % (self.where, self.python()))
            raise TransportError("%s: python3 probe failed: %s" % (self.where, text[-300:]))
        data = json.loads(result.stdout.strip().splitlines()[-1])
        facts["python"] = ".".join(str(p) for p in data["python"])
        if tuple(data["python"][:2]) < (3, 9):
            raise TransportError("%s: python %s is too old; the agent needs 3.9 or newer" % (self.where,
                                                                                          facts["python"]))
        facts["hostname"] = data["hostname"]
        self._prepared.update(data.get("hashes") or {})
        self._prepared_dirs.update(prep["dirs"])
        # The node read its clock as the probe ended: compare with when the answer arrived (biased by the
        # return latency only, milliseconds). Runs measure it precisely with agent.ping.
        facts["clock_offset_s"] = round(data["time"] - arrived, 4) if clock else None
        if data.get("executable") and not self.node.python:
            # Later commands run the real interpreter, not a wrapper found on PATH (pyenv shims cost 0.1 s each).
            self._python = data["executable"]
        from ..tools import get_tool
        facts["tools"] = {}
        for name, info in data["tools"].items():
            version = get_tool(name).parse_version(info["version_output"]) if info["path"] else None
            facts["tools"][name] = {"path": info["path"], "version": version,
                                    "error": None if version else (
                                        "%s not found on the node; install it (Debian: apt-get install %s) or "
                                        "upload one with --local-%s" % (tools[name], name, name)
                                        if not info["path"] else "%s does not look like %s" % (info["path"], name))}
        return facts

    def tool_path(self, tool):
        return self.options.tool_paths.get(tool) or getattr(self.node, tool, None) or tool

    # -- deploy ----------------------------------------------------------------
    def shipments(self):
        """What deploy puts on the node: (name, data, sha256, remote path, mode); computed here, no round trip."""
        import hashlib
        shipped = agent_bundle.build()
        items = [("agent", shipped.data, shipped.sha256,
                  posixpath.join(self.options.remote_dir, "agent", shipped.version_dir, "agent.pyz"), 0o644)]
        for tool, local in sorted(self.options.local_tools.items()):
            with open(local, "rb") as handle:
                data = handle.read()
            digest = hashlib.sha256(data).hexdigest()
            items.append((tool, data, digest, posixpath.join(self.options.remote_dir, "bin", "%s-%s" % (
                tool, digest[:12]), tool), 0o755))
        return items

    def log_dir(self):
        return posixpath.join(self.options.remote_dir, "logs")

    def deploy(self):
        """Ship the agent (and --local-TOOL binaries) into the remote dir; a second deploy transfers nothing."""
        return {name: self._ship(data, sha256, path, mode) for name, data, sha256, path, mode in self.shipments()}

    def _ship(self, data, sha256, remote_path, mode):
        present = self._prepared.get(remote_path)  # learnt by check(prepare=True): no round trip
        if present is None:
            check = ("import hashlib, os, sys\n"
                     "os.makedirs(os.path.dirname(sys.argv[1]) or '.', exist_ok=True)\n"
                     "try:\n"
                     "    print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())\n"
                     "except OSError:\n"
                     "    print('missing')\n")
            present = self.run([self.python(), "-I", "-c", check, remote_path]).stdout.strip()
        if present == sha256:
            return {"path": remote_path, "transferred_bytes": 0, "sha256": sha256}
        # Unique per upload: nodes may share a home directory (NFS), and all uploads of a run share one pid.
        tmp = "%s.tmp-%s-%s" % (remote_path, self.node.name, os.urandom(4).hex())
        if self.options.echo:
            self.options.echo("%s: sftp put %d bytes -> %s" % (self.node.name, len(data), remote_path))
        try:
            sftp = self.connect().sftp()
            sftp.putfo(io.BytesIO(data), tmp)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, remote_path)
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError("%s: uploading %s failed: %s" % (self.where, remote_path, exc))
        return {"path": remote_path, "transferred_bytes": len(data), "sha256": sha256}

    # -- the agent ----------------------------------------------------------------
    def launch_agent(self, secret, lease_s, run_id):
        """Deploy, then start the agent as a daemon on the node's loopback; returns its ready line (port, pid)."""
        import json
        deployed = self.deploy()
        log_path = posixpath.join(self.log_dir(), "agent-%s-%s.log" % (run_id, self.node.name))
        if self.log_dir() not in self._prepared_dirs:
            self.run(["mkdir", "-p", self.log_dir()])
        argv = [self.python(), "-I", deployed["agent"]["path"], "--node", self.node.name, "--listen", "127.0.0.1",
                "--lease", "%g" % lease_s, "--daemon", "--log", log_path]
        for tool in ("iperf3",):
            path = deployed[tool]["path"] if tool in deployed else self.tool_path(tool)
            argv += ["--tool", "%s=%s" % (tool, path)]
        argv += list(limit_args(self.node))
        command = " ".join(shlex.quote(a) for a in argv)
        if self.options.echo:
            self.options.echo("%s$ %s   (secret on stdin)" % (self.node.name, command))
        channel = self.connect().transport.open_session(timeout=START_TIMEOUT_S)
        try:
            channel.settimeout(START_TIMEOUT_S)
            channel.exec_command(command)
            channel.sendall((secret + "\n").encode("ascii"))  # on stdin: never in a process list
            channel.shutdown_write()
            output = b""
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                chunk = channel.recv(4096)
                if not chunk:
                    break
                output += chunk
            errors = channel.recv_stderr(4096).decode("utf-8", "replace").strip()
            status = channel.recv_exit_status()
        except socket.timeout:
            raise TransportError("%s: the agent did not report ready within %.0f s" % (self.where, START_TIMEOUT_S))
        finally:
            channel.close()
        if status != 0:
            raise TransportError("%s: the agent did not start (exit %s): %s" % (self.where, status, errors[-300:]))
        try:
            ready = json.loads(output.decode("utf-8").strip().splitlines()[-1])
            int(ready["port"])
            self.agent_pid = int(ready["pid"])
        except (ValueError, KeyError, IndexError):
            raise TransportError("%s: the agent's ready line is malformed: %r" % (self.where, output[:200]))
        ready["deploy"] = deployed
        ready["log"] = log_path
        return ready

    def channel_connector(self, port):
        """Connections to the agent on the node's loopback ``port``, as direct-tcpip channels of this SSH link."""
        def connect():
            transport = self.connect().transport
            return transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                          timeout=self.options.connect_timeout_s)
        return connect

    def start_agent(self, secret, lease_s, run_id, log_dir=None):
        """Start the agent for a run; returns an AgentHandle reached through a tunnel on this machine's loopback.
        At stop, the agent's log is fetched into ``log_dir`` (the run directory) and removed from the node."""
        ready = self.launch_agent(secret, lease_s, run_id)
        self._logs = (ready["log"], log_dir)
        port = int(ready["port"])
        local_port = self._tunnel(port)
        ready["remote_port"] = port
        return AgentHandle(node=self.node.name, endpoint={"kind": "tcp", "host": "127.0.0.1", "port": local_port,
                                                          "data_address": self.data_address()},
                           connect=tcp_connector("127.0.0.1", local_port), info=ready, stop=self.stop_agent)

    def _tunnel(self, remote_port):
        """A loopback port here tunnelled to the agent's loopback port there, through this SSH connection,
        so xdist workers reach remote agents without SSH of their own."""
        transport = self.connect().transport

        def open_channel(dest, origin):
            return transport.open_channel("direct-tcpip", dest, origin, timeout=self.options.connect_timeout_s)
        self._forward = Tunnel(open_channel, "127.0.0.1", remote_port, name="tunnel-%s" % self.node.name)
        return self._forward.port

    def data_address(self):
        """Where tests reach this node: data_address, or the address SSH resolved (an ssh_config alias's HostName)."""
        if self.node.data_address != self.node.address:
            return self.node.data_address
        return self.conn.host if self.conn is not None else self.node.address

    def stop_agent(self):
        """Ask the agent to stop (it stops its tools); make sure it is gone; close the tunnel and the connection."""
        if self._forward is not None:
            self._forward.close()
            self._forward = None
        if self.agent_pid is not None and self.conn is not None and self.conn.is_connected:
            self.kill_agent(self.agent_pid)
            self.agent_pid = None
            self._fetch_log()
        self.close()

    def _fetch_log(self):
        remote, log_dir = getattr(self, "_logs", (None, None))
        if not (remote and log_dir):
            return
        try:
            os.makedirs(log_dir, exist_ok=True)
            sftp = self.conn.sftp()
            sftp.get(remote, os.path.join(log_dir, "agent-%s.log" % self.node.name))
            sftp.remove(remote)
        except (OSError, paramiko.SSHException) as exc:
            log.warning("%s: could not fetch the agent log %s: %s", self.where, remote, exc)

    def kill_agent(self, pid):
        """Stop the agent ``pid`` (only if it is a meshperf agent); True if one was running."""
        try:
            result = self.run([self.python(), "-I", "-c", _STOP_SCRIPT, str(int(pid)), self.node.name],
                              timeout_s=30, check=False)
            return result.stdout.strip() == "stopped"
        except TransportError as exc:
            log.warning("%s: stopping the agent: %s", self.where, exc)
            return False

    def agent_pids(self):
        """PIDs of this node's meshperf agents run by this user (in this network namespace)."""
        result = self.run([self.python(), "-I", "-c", _FIND_AGENTS_SCRIPT, self.node.name], check=False)
        return [int(p) for p in result.stdout.split()] if result.exited == 0 else []

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


# SIGTERM makes an agent stop its tool processes and exit; wait (bounded), then SIGKILL (its tools
# die with it: PR_SET_PDEATHSIG).  Only a process whose command line is a meshperf agent is touched.
_STOP_SCRIPT = """\
import os, signal, sys, time
pid, node = int(sys.argv[1]), sys.argv[2]
def alive():
    # Only this node's agent: a recorded PID may have been reused by anything else since.
    try:
        os.kill(pid, 0)
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            args = handle.read().decode('utf-8', 'replace').split('\\0')
    except OSError:
        return False
    agent = 'pytest_meshperf.agent' in args or any(a.endswith('agent.pyz') for a in args)
    return agent and any(args[i:i + 2] == ['--node', node] for i in range(len(args)))
was = alive()
if was:
    os.kill(pid, signal.SIGTERM)
deadline = time.time() + 10
while alive() and time.time() < deadline:
    time.sleep(0.05)
if alive():
    os.kill(pid, signal.SIGKILL)
print('stopped' if was else 'absent')
"""


_FIND_AGENTS_SCRIPT = """\
import os, sys
me, net = os.getuid(), os.readlink('/proc/self/ns/net')
want = ['--node', sys.argv[1]]
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        if os.stat('/proc/' + pid).st_uid != me or os.readlink('/proc/%s/ns/net' % pid) != net:
            continue
        with open('/proc/%s/cmdline' % pid, 'rb') as handle:
            args = handle.read().decode('utf-8', 'replace').split('\\0')
    except OSError:
        continue
    agent = any(a.endswith('agent.pyz') for a in args) or 'pytest_meshperf.agent' in args
    if agent and any(args[i:i + 2] == want for i in range(len(args))):
        print(pid)
"""


def _explain(exc, node):
    text = str(exc)
    if isinstance(exc, paramiko.PasswordRequiredException) or "encrypted" in text.lower():
        return ("the key %s needs a passphrase; meshperf never prompts: load it into ssh-agent (ssh-add) "
                "or use a key without one" % (node.node.ssh_key or "file"))
    if isinstance(exc, paramiko.AuthenticationException):
        return ("authentication failed for user %s (%s); meshperf uses keys and never prompts for a password: "
                "check ssh_user and ssh_key" % (node.conn.user if node.conn else node.node.ssh_user or "?", text))
    if "not found in known_hosts" in text:
        return ("unknown host key: %s holds no key for this host; check its key and add it "
                "(ssh-keyscan -p %d %s >> %s), or opt out with --ssh-host-keys accept-new (or off for throwaway labs)"
                % (node.known_hosts, node.node.ssh_port or 22, shlex.quote(node.conn.host if node.conn else
                                                                          node.node.address), node.known_hosts))
    return text
