"""Runs tool processes on the node and keeps them bounded.

Every process has a deadline and is killed past it; every process dies with the
agent (PR_SET_PDEATHSIG, set by setpriv or in the child), so a SIGKILLed agent
leaves nothing behind; output goes to files, so a chatty tool cannot block on a
full pipe.
"""
from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("meshperf.agent")

STOP_GRACE_S = 2.0
HIDDEN = "********"   # what a secret word of a command line shows as
MAX_OUTPUT_BYTES = 16 * 1024 * 1024   # stdout + stderr must fit one 64 MiB frame with room to spare
_PR_SET_PDEATHSIG = 1
ARM_AHEAD_S = 0.02   # a timed start due later than this is forked at once and only released at its time
# sh's script for an armed start: its arguments (the tool's argv) are exec'd once a line arrives; EOF without
# one (the agent gone) ends it without running anything.
ARMED_SCRIPT = 'read -r _ && exec "$@"'


class TooManyProcesses(Exception):
    """The agent already runs its cap of tool processes."""


def _preexec(parent_pid, cpu):
    def preexec():
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except Exception:  # not Linux: deadlines and stop_all still bound the process
            pass
        if os.getppid() != parent_pid:  # the agent died before prctl took effect
            os._exit(1)
        if cpu is not None:  # pinned before exec: the tool never runs anywhere else
            os.sched_setaffinity(0, {cpu})
    return preexec


def _wrappers():
    """util-linux's setpriv and taskset, if they work here: [setpriv prefix] and [taskset prefix builder].

    A ``preexec_fn`` makes Python fork and run Python code in the child: 5 to 15 ms per start on
    a busy node, paid twice per measurement and once per flow of a burst (the skew between
    flows).  ``setpriv --pdeathsig KILL`` and ``taskset -c N`` set the same before exec with
    Python's fast spawn path (about 2 ms); without them the preexec path remains.
    """
    found = {"sh": "/bin/sh" if os.access("/bin/sh", os.X_OK) else None}
    for name, probe in (("setpriv", ["--pdeathsig", "KILL", "--", "true"]), ("taskset", ["-c", "0", "true"])):
        path = shutil.which(name)
        try:
            ok = path and subprocess.run([path] + probe, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, timeout=5).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        found[name] = path if ok else None
    return found


class ManagedProcess:
    def __init__(self, ident: str, tool: str, role: str, argv: list[str], timeout_s: float, port: int | None,
                 out_path: str, err_path: str, cpu: int | None = None, shared: bool = False,
                 secrets: tuple[str, ...] = (), owner: object = None) -> None:
        self.id = ident
        self.owner = owner        # the connection that started it: when that one goes, so does the process
        self.shared = shared      # a long-lived server every measurement uses (netserver), in a group of its own
        self.secrets = secrets    # words of argv never shown (netserver's passphrase): not in results, not in logs
        self.cpu = cpu
        self.tool = tool
        self.role = role
        self.argv = argv
        self.port = port
        self.timeout_s = timeout_s
        self.out_path = out_path
        self.err_path = err_path
        self.popen = None
        self.started = None
        self.deadline = None
        self.ended = None
        self.exit_code = None
        self.timed_out = False
        self.stopped = False
        self.spawn_error = None
        self.finishing = False
        self.node_load = None     # the node's CPU and memory while this process ran (monitor.py)
        self.armed = False        # forked ahead of its start time, waiting in sh's read (Supervisor._arm)
        self.held = False         # waiting for Supervisor.release, not for a time
        self.due = None           # monotonic start time; a heap entry with another one is stale
        self.future = None
        self.done = threading.Event()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def shown_argv(self) -> list[str]:
        """argv as results and logs show it: every secret word masked."""
        return [HIDDEN if word in self.secrets else word for word in self.argv]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "tool": self.tool, "role": self.role, "pid": self.pid, "port": self.port,
                "cpu": self.cpu, "shared": self.shared, "started": self.started, "running": not self.done.is_set(),
                "deadline_in_s": None if self.deadline is None else round(self.deadline - time.monotonic(), 3)}

    def result(self) -> dict[str, Any]:
        rc = self.exit_code
        return {
            "id": self.id, "tool": self.tool, "role": self.role, "pid": self.pid, "port": self.port,
            "argv": self.shown_argv(), "command": " ".join(shlex.quote(a) for a in self.shown_argv()), "cpu": self.cpu,
            "started": self.started, "ended": self.ended, "spawn_error": self.spawn_error,
            "node_load": self.node_load,
            "exit_code": rc if rc is None or rc >= 0 else None,
            "signal": -rc if rc is not None and rc < 0 else None,
            "timed_out": self.timed_out, "stopped": self.stopped,
            "stdout": _read(self.out_path), "stderr": _read(self.err_path),
        }


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_OUTPUT_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""


class Supervisor:
    def __init__(self, state_dir: str, max_processes: int = 64,
                 on_start: Callable[[ManagedProcess], object] | None = None,
                 on_end: Callable[[ManagedProcess], object] | None = None) -> None:
        self.state_dir = state_dir
        self.max_processes = max_processes
        self._on_start = on_start or (lambda proc: None)
        self._on_end = on_end or (lambda proc: None)
        self._procs = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._spawn_queue = queue.Queue()
        self._scheduled = []            # heap of (due monotonic, seq, proc, future): timed starts
        self._tools = _wrappers()
        self._closing = threading.Event()
        # One long-lived thread forks every child: PDEATHSIG fires when the forking
        # *thread* exits, so children must not be forked from short-lived RPC threads.
        self._spawner = threading.Thread(target=self._spawn_loop, name="spawner", daemon=True)
        self._spawner.start()
        self._reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)
        self._reaper.start()

    # -- starting -----------------------------------------------------------
    def start(self, tool: str, role: str, argv: list[str], timeout_s: float, port: int | None = None,
              cpu: int | None = None, start_in_s: float | None = None, shared: bool = False,
              secrets: tuple[str, ...] = (), owner: object = None, hold: bool = False) -> ManagedProcess:
        """Start a tool process now, or ``start_in_s`` seconds from now (then return at once, pid unknown yet);
        ``hold``: forked now but started only by ``release`` (at most ``timeout_s`` later, else it fails)."""
        with self._lock:
            running = sum(1 for p in self._procs.values() if not p.done.is_set())
            if running >= self.max_processes:
                raise TooManyProcesses()
            ident = f"p{next(self._ids)}"
            base = os.path.join(self.state_dir, ident)
            proc = ManagedProcess(ident, tool, role, list(argv), float(timeout_s), port, base + ".out",
                                  base + ".err", cpu=cpu, shared=shared, secrets=tuple(secrets),
                                  owner=None if shared else owner)
            self._procs[ident] = proc
        proc.future = future = Future()
        proc.held = hold
        start_in_s = proc.timeout_s if hold else start_in_s
        proc.due = due = time.monotonic() + max(0.0, start_in_s or 0.0)
        self._spawn_queue.put((due, proc, future))
        if start_in_s is not None:
            return proc
        try:
            future.result(timeout=30)
        except BaseException:
            with self._lock:
                self._procs.pop(ident, None)
            raise
        return proc

    def _spawn_loop(self):
        # One thread forks everything (see __init__); timed starts wait in a heap, so a
        # burst's clients start on their due time while immediate starts still go first.
        seq = itertools.count()
        while True:
            timeout = None
            if self._scheduled:
                timeout = max(0.0, self._scheduled[0][0] - time.monotonic())
            try:
                item = self._spawn_queue.get(timeout=timeout)
            except queue.Empty:
                item = False
            if item is None:
                for _, _, proc, future in self._scheduled:
                    if not future.done():
                        self._give_up(proc, future, OSError("the agent stopped before the start time"))
                return
            if item:
                due, proc, future = item
                if not (proc.armed or proc.done.is_set() or proc.shared) and due - time.monotonic() >= ARM_AHEAD_S \
                        and self._tools["sh"] and self._fast(proc):
                    self._arm(proc, future)
                heapq.heappush(self._scheduled, (due, next(seq), proc, future))
            while self._scheduled and self._scheduled[0][0] <= time.monotonic():
                due, _, proc, future = heapq.heappop(self._scheduled)
                if due != proc.due:
                    continue   # released since: its new time is in the heap too
                if proc.held:
                    self._give_up(proc, future, OSError(f"held {proc.timeout_s:.0f} s and never released"))
                elif proc.armed:
                    self._exec_armed(proc, future)
                elif not proc.done.is_set():
                    self._spawn(proc, future)

    def release(self, ident: str, start_in_s: float = 0.0) -> ManagedProcess:
        """Start a held process ``start_in_s`` from now.  KeyError: no such process; ValueError: not held."""
        with self._lock:
            proc = self._procs.get(ident)
            if proc is None:
                raise KeyError(ident)
            if not proc.held or proc.done.is_set():
                raise ValueError(f"process {ident} is not held (started, stopped or ended)")
            proc.held = False
            proc.due = due = time.monotonic() + max(0.0, start_in_s)
        self._spawn_queue.put((due, proc, proc.future))
        return proc

    def _give_up(self, proc, future, exc):
        if proc.armed:
            self._terminate(proc)
        self._spawn_failed(proc, future, exc)

    def _arm(self, proc, future):
        """A timed start forked now, held in ``sh``'s ``read`` until its start time: then one exec is all that
        is left (a round's 32 clients per two cores start together, not one fork and two execs after another).
        The tool's words are ``sh``'s arguments, never its script."""
        try:
            with open(proc.out_path, "wb") as out, open(proc.err_path, "wb") as err:
                proc.popen = subprocess.Popen(self._wrapped(proc, [self._tools["sh"], "-c", ARMED_SCRIPT, "sh"]),
                                              stdin=subprocess.PIPE, stdout=out, stderr=err, close_fds=True)
            proc.armed = True
        except BaseException as exc:
            self._spawn_failed(proc, future, exc)

    def _exec_armed(self, proc, future):
        """The armed process's start time: its newline, and it execs the tool (on its own if it was stopped)."""
        try:
            if proc.stopped or proc.popen.poll() is not None:
                raise OSError("stopped before its start time")
            os.write(proc.popen.stdin.fileno(), b"\n")
            proc.popen.stdin.close()
        except BaseException as exc:
            self._terminate(proc)
            proc.spawn_error = proc.spawn_error or f"{proc.argv[0]}: {exc}"
            future.set_exception(exc)
            return
        self._running(proc, future)

    def _spawn(self, proc, future):
        if proc.stopped:  # stopped while waiting for its start time
            self._spawn_failed(proc, future, OSError("stopped before its start time"))
            return
        try:
            with open(proc.out_path, "wb") as out, open(proc.err_path, "wb") as err:
                # A shared server (netserver) forks a child per test: in a session and process group of its
                # own, the group is stopped whole (_terminate), children included.
                proc.popen = subprocess.Popen(self._wrapped(proc), stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=err, close_fds=True, start_new_session=proc.shared,
                                              **self._preexec(proc))
        except BaseException as exc:
            self._spawn_failed(proc, future, exc)
            return
        self._running(proc, future)

    def _running(self, proc, future):
        proc.started = time.time()
        self._on_start(proc)
        proc.deadline = time.monotonic() + proc.timeout_s  # from here the reaper watches it
        # A waiter per process notices its exit at once (the reaper's tick would add up to 50 ms
        # to every measurement, twice: client and server).
        threading.Thread(target=self._wait_exit, args=(proc,), name=f"wait-{proc.id}", daemon=True).start()
        log.info("started %s %s pid %s%s: %s", proc.role, proc.tool, proc.pid,
                 "" if proc.cpu is None else f" on core {proc.cpu}", proc.result()["command"])
        future.set_result(proc)

    def _fast(self, proc):
        return self._tools["setpriv"] and (proc.cpu is None or self._tools["taskset"])

    def _wrapped(self, proc, hold=()):
        if not self._fast(proc):
            return proc.argv
        pin = [self._tools["taskset"], "-c", str(proc.cpu)] if proc.cpu is not None else []
        return [self._tools["setpriv"], "--pdeathsig", "KILL", "--"] + pin + list(hold) + proc.argv

    def _preexec(self, proc):
        return {} if self._fast(proc) else {"preexec_fn": _preexec(os.getpid(), proc.cpu)}

    def _spawn_failed(self, proc, future, exc):
        proc.spawn_error = f"{proc.argv[0]}: {exc}"
        proc.ended = time.time()
        proc.done.set()
        future.set_exception(exc)

    # -- watching -----------------------------------------------------------
    def _reap_loop(self):
        while not self._closing.is_set():
            now = time.monotonic()
            with self._lock:
                procs = [p for p in self._procs.values() if p.deadline is not None and not p.done.is_set()]
            for proc in procs:
                if proc.popen.poll() is not None:
                    self._finish(proc)
                elif now > proc.deadline:
                    log.warning("%s %s pid %s passed its %.1f s deadline: killing it",
                                proc.role, proc.tool, proc.pid, proc.timeout_s)
                    proc.timed_out = True
                    self._terminate(proc)
            self._closing.wait(0.05)

    def _wait_exit(self, proc):
        try:
            proc.popen.wait()
        except OSError:
            return  # the reaper's poll covers it
        self._finish(proc)

    def _finish(self, proc):
        with self._lock:  # the reaper and a stop may both get here: finish once
            other = proc.finishing
            proc.finishing = True
        if other:
            proc.done.wait(STOP_GRACE_S)
            return
        proc.exit_code = proc.popen.returncode
        proc.ended = time.time()
        proc.node_load = self._on_end(proc)
        proc.done.set()

    def _terminate(self, proc):
        if proc.popen.poll() is None:
            try:
                self._signal(proc, signal.SIGTERM)
                proc.popen.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.popen.wait(STOP_GRACE_S)
            except OSError:
                pass
        if proc.shared:   # the group's other members (netserver's per-test children), ended or not
            self._signal(proc, signal.SIGKILL)
        self._finish(proc)

    @staticmethod
    def _signal(proc, signum):
        """``signum`` to the process, or to its whole group when it leads one (a shared server)."""
        try:
            if proc.shared:
                os.killpg(proc.popen.pid, signum)
            else:
                proc.popen.send_signal(signum)
        except (ProcessLookupError, PermissionError):
            pass

    # -- collecting ---------------------------------------------------------
    def get(self, ident: str) -> ManagedProcess:
        with self._lock:
            proc = self._procs.get(ident)
        if proc is None:
            raise KeyError(ident)
        return proc

    def wait(self, ident: str, timeout_s: float) -> dict[str, Any] | None:
        """The result once the process ended (and forget it), or None if still running."""
        proc = self.get(ident)
        if not proc.done.wait(max(0.0, timeout_s)):
            return None
        return self._collect(proc)

    def stop(self, ident: str) -> dict[str, Any]:
        proc = self.get(ident)
        if not proc.done.is_set():
            proc.stopped = True
            if proc.popen is not None:
                self._terminate(proc)
            else:  # still waiting for its start time or release: the spawner drops it now
                with self._lock:
                    proc.held = False
                    proc.due = due = time.monotonic()
                self._spawn_queue.put((due, proc, proc.future))
                proc.done.wait(STOP_GRACE_S)
        return self._collect(proc)

    def _collect(self, proc):
        result = proc.result()
        with self._lock:
            self._procs.pop(proc.id, None)
        for path in (proc.out_path, proc.err_path):
            try:
                os.unlink(path)
            except OSError:
                pass
        return result

    def owned_by(self, owner: object) -> list[ManagedProcess]:
        """The processes ``owner`` (a connection) started that nobody has collected yet."""
        with self._lock:
            return [p for p in self._procs.values() if owner is not None and p.owner is owner]

    def running(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p.summary() for p in self._procs.values() if not p.done.is_set()]

    def stop_all(self) -> int:
        """Stop every running process; returns how many were running."""
        with self._lock:
            procs = [p for p in self._procs.values() if not p.done.is_set()]
        for proc in procs:
            proc.stopped = True  # one still waiting for its start time is dropped by the spawner
            if proc.popen is not None:
                self._terminate(proc)
        return len(procs)

    def close(self) -> None:
        self.stop_all()
        self._closing.set()
        self._spawn_queue.put(None)
