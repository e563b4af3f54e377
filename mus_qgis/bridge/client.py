"""The QGIS end of the worker protocol: start engine workers, send jobs, relay what they say.

Standard library only: QGIS's process imports this module, and nothing heavier. A worker is a
``python -m mus_qgis.engine worker`` process started from the engine environment's Python; it stays
warm between jobs (a loaded model stays loaded) until it has been idle for a while. A worker that
dies (segfault, out of memory, ``kill -9``) is an :class:`EngineDiedError` error in the job that was
running, never a crash of the caller.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from ..shared.protocol import DEFAULT_IDLE_TIMEOUT_S, PROTOCOL_VERSION, decode, encode

# Decided once; the tests run the Windows branches on Linux by setting it to False.
POSIX = not sys.platform.startswith("win")
# subprocess.CREATE_NO_WINDOW, spelled out because only Windows' subprocess module has it: an
# engine process started from QGIS (a GUI program) would otherwise open a console window.
CREATE_NO_WINDOW = 0x08000000
# The folder that holds the mus_qgis package: the worker imports the same engine code as QGIS.
PLUGIN_PARENT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120.0
# After a cancel the worker has this long to stop on its own before it is killed.
CANCEL_GRACE_S = 3.0
STDERR_LINES_KEPT = 40
# Variables of QGIS's process that must not reach the engine's Python: another Python's paths,
# preloaded libraries (the desktop's GL stack is what crashed torch's triton in QGIS's process),
# and QGIS's own GDAL/PROJ/Qt data folders (the wheels' libraries bring theirs, of other versions).
_NOT_INHERITED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "LD_PRELOAD",
    "GDAL_DATA",
    "GDAL_DRIVER_PATH",
    "PROJ_LIB",
    "PROJ_DATA",
    "QT_PLUGIN_PATH",
)
# How the engine's Python finds the plugin's code: appended to sys.path (after its own packages,
# so no folder of the plugins directory can shadow one), with the working folder taken out.
_BOOT = (
    "import runpy, sys; "
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')] + [{parent!r}]; "
    "runpy.run_module('mus_qgis.engine', run_name='__main__', alter_sys=True)"
)


# The engine's packages: they live in the engine environment, and QGIS's process never imports
# them (the tests check it; the desktop crashed when torch's triton loaded beside Mesa's LLVM).
ENGINE_ONLY_MODULES = (
    "torch",
    "open_clip",
    "osmnx",
    "geopandas",
    "shapely",
    "pyproj",
    "pyogrio",
    "osmium",
    "networkx",
    "pandas",
    "libpysal",
    "esda",
    "scipy",
)


class EngineError(Exception):
    """Base of the errors the worker client raises."""


class EngineNotSetUpError(EngineError):
    """No engine Python is configured, or the configured one does not exist."""


class EngineDiedError(EngineError):
    """The worker process ended without answering (crash, kill, out of memory)."""


class EngineCanceledError(EngineError):
    """The job was canceled (the worker stopped, or was killed when it did not)."""


class EngineJobError(EngineError):
    """The job failed in the worker; ``user_error`` tells a bad input from an internal fault."""

    def __init__(self, message: str, error: str, user_error: bool, details: str = "") -> None:
        super().__init__(message)
        self.error = error
        self.user_error = user_error
        self.details = details


class NullProgress:
    """A progress channel that reports nowhere and is never canceled."""

    def set_progress(self, percent: float) -> None:
        pass

    def is_canceled(self) -> bool:
        return False

    def info(self, message: str) -> None:
        pass


def worker_environment() -> dict[str, str]:
    """The environment an engine process starts with: the caller's, less what is QGIS's."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def engine_command(python: str, *arguments: str) -> list[str]:
    """``python -m mus_qgis.engine ARGUMENTS``, with the plugin's code found after site-packages."""
    return [python, "-c", _BOOT.format(parent=str(PLUGIN_PARENT)), *arguments]


def process_options() -> dict:
    """Popen options for engine processes: no console window on Windows; on POSIX a session of
    their own, so that a Ctrl-C meant for QGIS does not reach them and a group can be stopped."""
    if POSIX:
        return {"start_new_session": True}
    return {"creationflags": CREATE_NO_WINDOW}


def kill_process_tree(process: subprocess.Popen) -> None:
    """Kill a process started with :func:`process_options` and what it started, at once.

    POSIX: its process group (its session's leader is the process itself). Windows has no
    group to signal and ``Popen.kill`` ends only the process, so ``taskkill /T /F`` ends the
    tree (data loaders, Ray's raylet), then ``kill`` makes sure of the process itself.
    """
    if process.poll() is not None:
        return
    if POSIX:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    else:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["taskkill", "/T", "/F", "/PID", str(process.pid)],
                capture_output=True,
                timeout=30,
                check=False,
                creationflags=CREATE_NO_WINDOW,
            )
    with contextlib.suppress(OSError):
        process.kill()


def environment_folder(python: str) -> str:
    """The real folder of the environment a Python belongs to (``ENV/bin/python``): a set-up that
    switches ``ROOT/env`` to a new environment changes it, even where the path stays the same."""
    return os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(python))))


class Worker:
    """One engine worker process."""

    def __init__(self, python: str, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S) -> None:
        self.python = python
        self.environment = environment_folder(python)
        self.idle_timeout_s = idle_timeout_s
        self.last_used = time.monotonic()
        command = engine_command(python, "worker", "--idle-timeout", f"{idle_timeout_s}")
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=str(PLUGIN_PARENT),
                env=worker_environment(),
                **process_options(),
            )
        except OSError as exc:
            message = f"The engine Python {python} cannot be started: {exc}"
            raise EngineNotSetUpError(message) from exc
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
        self._messages: queue.Queue = queue.Queue()
        self._send_lock = threading.Lock()
        self._stdout_reader = threading.Thread(
            target=self._read_stdout, daemon=True, name="mus-engine-out"
        )
        self._stdout_reader.start()
        self._stderr_reader = threading.Thread(
            target=self._read_stderr, daemon=True, name="mus-engine-err"
        )
        self._stderr_reader.start()
        self.pid = self.process.pid
        self._wait_ready()

    # -- pipes ------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            message = decode(line)
            if message is not None:
                self._messages.put(message)
        self._messages.put(None)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            text = line.decode("utf-8", errors="replace").rstrip()
            if text:
                self.stderr_tail.append(text)

    def _send(self, message: dict) -> None:
        with self._send_lock:
            try:
                self.process.stdin.write(encode(message))
                self.process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                raise EngineDiedError(self._death_notice("while a job was being sent")) from exc

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                message = self._messages.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise EngineDiedError(
                    f"The engine worker did not start within {STARTUP_TIMEOUT_S:.0f} s."
                ) from None
            if message is None:
                raise EngineDiedError(self._death_notice("at start")) from None
            if message.get("type") == "ready":
                if message.get("protocol") != PROTOCOL_VERSION:
                    self.kill()
                    raise EngineDiedError(
                        f"The engine speaks protocol {message.get('protocol')}, this plugin "
                        f"{PROTOCOL_VERSION}: reinstall the plugin or set up the engine again."
                    )
                self.pid = int(message.get("pid", self.process.pid))
                return

    # -- life -------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.process.poll() is None

    def about_to_idle_out(self, margin_s: float = 30.0) -> bool:
        """Whether the worker's own idle timeout is so near that a job sent now could meet it."""
        if self.idle_timeout_s <= 0:
            return False
        return time.monotonic() - self.last_used > max(0.0, self.idle_timeout_s - margin_s)

    def kill(self) -> None:
        kill_process_tree(self.process)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self._release_pipes()

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        if self.alive():
            try:
                self._send({"type": "shutdown"})
                self.process.stdin.close()
                self.process.wait(timeout=timeout_s)
            except (EngineDiedError, OSError, subprocess.TimeoutExpired):
                self.kill()
        self._release_pipes()

    def _release_pipes(self) -> None:
        """Close the pipes once their readers have seen the end (a pipe left open is a
        ResourceWarning in every headless run's output, qgis_process's included)."""
        if self.process.poll() is None:
            return  # still running: the pipes are in use
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()
        for pipe, reader in (
            (self.process.stdout, self._stdout_reader),
            (self.process.stderr, self._stderr_reader),
        ):
            reader.join(timeout=1)
            if not reader.is_alive():  # closing a pipe under a reading thread is not safe
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()

    def _death_notice(self, when: str) -> str:
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr_reader.join(timeout=1)  # the last lines explain the death
        if code is None:
            how = "stopped answering"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            how = f"was killed by {name}"
            if -code == getattr(signal, "SIGKILL", 9):
                how += " (out of memory, or killed by hand)"
        elif not POSIX and code >= 0xC0000000:
            how = f"crashed with code {code:#010x}"  # an NTSTATUS, e.g. 0xc0000005 access violation
        else:
            how = f"exited with code {code}"
        text = f"The engine worker (pid {self.pid}, {self.python}) {how} {when}."
        tail = "\n".join(list(self.stderr_tail)[-12:])
        if tail:
            text += f" Its last messages:\n{tail}"
        return text

    # -- jobs -------------------------------------------------------------------------------
    def run(self, job: str, params: dict, progress=None) -> dict:
        """Run one job and return its result; progress and log lines go to ``progress``."""
        progress = progress or NullProgress()
        if progress.is_canceled():  # canceled before it began: nothing to send
            raise EngineCanceledError("Canceled by the user.")
        job_id = uuid.uuid4().hex
        self._send({"type": "job", "id": job_id, "job": job, "params": params})
        canceled_at: float | None = None
        while True:
            try:
                message = self._messages.get(timeout=0.1)
            except queue.Empty:
                # End of output is the usual sign of death; a child that inherited the pipe could
                # keep it open, so the process itself is asked too.
                message = {} if self.alive() else None
            if message is None:
                raise EngineDiedError(self._death_notice(f"during the job '{job}'"))
            if message.get("id") == job_id:
                kind = message.get("type")
                if kind == "progress":
                    progress.set_progress(float(message.get("percent", 0)))
                elif kind == "log":
                    _log(progress, message.get("level", "info"), str(message.get("message", "")))
                elif kind == "result":
                    return message.get("result") or {}
                elif kind == "error":
                    if message.get("canceled"):
                        raise EngineCanceledError(str(message.get("message", "Canceled.")))
                    raise EngineJobError(
                        str(message.get("message", "")),
                        str(message.get("error", "")),
                        bool(message.get("user_error")),
                        str(message.get("traceback", "")),
                    )
            if progress.is_canceled():
                now = time.monotonic()
                if canceled_at is None:
                    canceled_at = now
                    self._send({"type": "cancel", "id": job_id})
                elif now - canceled_at > CANCEL_GRACE_S:
                    self.kill()
                    raise EngineCanceledError(
                        f"Canceled: the engine worker did not stop within {CANCEL_GRACE_S:g} s "
                        "and was stopped; what it had finished is kept."
                    )


def _log(progress, level: str, text: str) -> None:
    method = getattr(progress, level, None) if level in ("warning", "error") else None
    (method or progress.info)(text)


class WorkerPool:
    """Warm workers by engine Python: a job takes an idle one, or starts one."""

    def __init__(self, keep_idle: int = 1) -> None:
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._lock = threading.Lock()
        self.keep_idle = keep_idle

    def run(
        self,
        python: str,
        job: str,
        params: dict,
        progress=None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> dict:
        worker = self._take(python, idle_timeout_s)
        try:
            return worker.run(job, params, progress)
        finally:
            # A worker that answered (a result, an error, a cancel it obeyed) stays warm; one
            # that died or was killed is gone.
            if worker.alive():
                self._give_back(worker)
            else:
                self._drop(worker)

    def _take(self, python: str, idle_timeout_s: float) -> Worker:
        environment = environment_folder(python)
        stale = []
        chosen = None
        with self._lock:
            while self._idle and chosen is None:
                worker = self._idle.pop()
                if (
                    worker.python == python
                    and worker.environment == environment
                    and worker.alive()
                    and not worker.about_to_idle_out()
                ):
                    chosen = worker
                    self._busy.add(worker)
                else:
                    stale.append(worker)
        for worker in stale:
            worker.close(timeout_s=1)
        if chosen is not None:
            return chosen
        worker = Worker(python, idle_timeout_s)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: Worker) -> None:
        worker.last_used = time.monotonic()
        with self._lock:
            self._busy.discard(worker)
            if worker.alive() and len(self._idle) < self.keep_idle:
                self._idle.append(worker)
                return
        worker.close()

    def _drop(self, worker: Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        worker.kill()

    def environments_in_use(self) -> set[str]:
        """The environment folders of workers running a job now (a set-up must not remove them)."""
        with self._lock:
            return {worker.environment for worker in self._busy}

    def busy_pids(self) -> list[int]:
        """The pids of workers running a job now (for diagnostics and tests)."""
        with self._lock:
            return [worker.pid for worker in self._busy]

    def idle_pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._idle if worker.alive()]

    def shutdown(self) -> None:
        """Close every idle worker (busy ones end with their job)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close(timeout_s=2)


POOL = WorkerPool()
atexit.register(POOL.shutdown)
