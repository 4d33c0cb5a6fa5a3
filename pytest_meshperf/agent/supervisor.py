"""Runs tool processes on the node and keeps them bounded.

Every process has a deadline and is killed past it; every process dies with the
agent (PR_SET_PDEATHSIG), so a SIGKILLed agent leaves nothing behind; output goes
to files, so a chatty tool cannot block on a full pipe.
"""

import ctypes
import itertools
import logging
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from concurrent.futures import Future

log = logging.getLogger("meshperf.agent")

STOP_GRACE_S = 2.0
MAX_OUTPUT_BYTES = 16 * 1024 * 1024   # stdout + stderr must fit one 64 MiB frame with room to spare
_PR_SET_PDEATHSIG = 1


class TooManyProcesses(Exception):
    """The agent already runs its cap of tool processes."""


def _die_with_parent(parent_pid):
    def preexec():
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except Exception:  # not Linux: deadlines and stop_all still bound the process
            pass
        if os.getppid() != parent_pid:  # the agent died before prctl took effect
            os._exit(1)
    return preexec


class ManagedProcess:
    def __init__(self, ident, tool, role, argv, timeout_s, port, out_path, err_path):
        self.id = ident
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
        self.done = threading.Event()

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def summary(self):
        return {"id": self.id, "tool": self.tool, "role": self.role, "pid": self.pid, "port": self.port,
                "started": self.started, "running": not self.done.is_set(),
                "deadline_in_s": None if self.deadline is None else round(self.deadline - time.monotonic(), 3)}

    def result(self):
        rc = self.exit_code
        return {
            "id": self.id, "tool": self.tool, "role": self.role, "pid": self.pid, "port": self.port,
            "argv": self.argv, "command": " ".join(shlex.quote(a) for a in self.argv),
            "started": self.started, "ended": self.ended,
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
    def __init__(self, state_dir, max_processes=64):
        self.state_dir = state_dir
        self.max_processes = max_processes
        self._procs = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._spawn_queue = queue.Queue()
        self._closing = threading.Event()
        # One long-lived thread forks every child: PDEATHSIG fires when the forking
        # *thread* exits, so children must not be forked from short-lived RPC threads.
        self._spawner = threading.Thread(target=self._spawn_loop, name="spawner", daemon=True)
        self._spawner.start()
        self._reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)
        self._reaper.start()

    # -- starting -----------------------------------------------------------
    def start(self, tool, role, argv, timeout_s, port=None):
        with self._lock:
            running = sum(1 for p in self._procs.values() if not p.done.is_set())
            if running >= self.max_processes:
                raise TooManyProcesses()
            ident = "p%d" % next(self._ids)
            base = os.path.join(self.state_dir, ident)
            proc = ManagedProcess(ident, tool, role, list(argv), float(timeout_s), port, base + ".out", base + ".err")
            self._procs[ident] = proc
        future = Future()
        self._spawn_queue.put((proc, future))
        try:
            future.result(timeout=30)
        except BaseException:
            with self._lock:
                self._procs.pop(ident, None)
            raise
        log.info("started %s %s pid %s: %s", role, tool, proc.pid, proc.result()["command"])
        return proc

    def _spawn_loop(self):
        while True:
            item = self._spawn_queue.get()
            if item is None:
                return
            proc, future = item
            try:
                with open(proc.out_path, "wb") as out, open(proc.err_path, "wb") as err:
                    proc.popen = subprocess.Popen(proc.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                                  close_fds=True, preexec_fn=_die_with_parent(os.getpid()))
                proc.started = time.time()
                proc.deadline = time.monotonic() + proc.timeout_s
                future.set_result(proc)
            except BaseException as exc:
                future.set_exception(exc)

    # -- watching -----------------------------------------------------------
    def _reap_loop(self):
        while not self._closing.is_set():
            now = time.monotonic()
            with self._lock:
                procs = [p for p in self._procs.values() if p.popen and not p.done.is_set()]
            for proc in procs:
                if proc.popen.poll() is not None:
                    self._finish(proc)
                elif now > proc.deadline:
                    log.warning("%s %s pid %s passed its %.1f s deadline: killing it",
                                proc.role, proc.tool, proc.pid, proc.timeout_s)
                    proc.timed_out = True
                    self._terminate(proc)
            self._closing.wait(0.05)

    def _finish(self, proc):
        proc.exit_code = proc.popen.returncode
        proc.ended = time.time()
        proc.done.set()

    def _terminate(self, proc):
        if proc.popen.poll() is None:
            try:
                proc.popen.send_signal(signal.SIGTERM)
                proc.popen.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(STOP_GRACE_S)
            except OSError:
                pass
        self._finish(proc)

    # -- collecting ---------------------------------------------------------
    def get(self, ident):
        with self._lock:
            proc = self._procs.get(ident)
        if proc is None:
            raise KeyError(ident)
        return proc

    def wait(self, ident, timeout_s):
        """The result once the process ended (and forget it), or None if still running."""
        proc = self.get(ident)
        if not proc.done.wait(max(0.0, timeout_s)):
            return None
        return self._collect(proc)

    def stop(self, ident):
        proc = self.get(ident)
        if not proc.done.is_set():
            proc.stopped = True
            self._terminate(proc)
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

    def running(self):
        with self._lock:
            return [p.summary() for p in self._procs.values() if not p.done.is_set()]

    def stop_all(self):
        """Stop every running process; returns how many were running."""
        with self._lock:
            procs = [p for p in self._procs.values() if p.popen and not p.done.is_set()]
        for proc in procs:
            proc.stopped = True
            self._terminate(proc)
        return len(procs)

    def close(self):
        self.stop_all()
        self._closing.set()
        self._spawn_queue.put(None)
