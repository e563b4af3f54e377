"""The worker's loop: read jobs from stdin, run them, answer on the protocol channel.

Started by the client as ``python -m mus_qgis.engine worker``. It must never write anything but
protocol lines to the channel, so the real stdout is kept for the protocol and file descriptor 1 is
pointed at stderr: a library that prints (or a C extension writing to fd 1) cannot garble a line.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
import traceback

from ...shared.errors import CanceledError, MusError, secret_redactor
from ...shared.protocol import DEFAULT_IDLE_TIMEOUT_S, PROTOCOL_VERSION, decode, encode
from ...shared.resources import plugin_version

log = logging.getLogger("mus_qgis")

# Progress is sent at most this often (a batch loop may report thousands of times).
PROGRESS_INTERVAL_S = 0.2


class Channel:
    """The protocol stream: whole lines, written under a lock (jobs may report from threads)."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict) -> None:
        data = encode(message)
        with self._lock:
            try:
                self._stream.write(data)
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                os._exit(0)  # the client has gone: nobody is left to answer


class JobProgress:
    """The engine's progress channel (``progress.Progress``) for one job of the worker."""

    def __init__(
        self, channel: Channel, job_id: str, cancel: threading.Event, redact=lambda text: text
    ) -> None:
        self._channel = channel
        self._id = job_id
        self._cancel = cancel
        self._redact = redact
        self._last_sent = 0.0
        self._last_percent = -1.0

    def set_progress(self, percent: float) -> None:
        now = time.monotonic()
        percent = float(percent)
        due = percent >= 100 or now - self._last_sent >= PROGRESS_INTERVAL_S
        if due and percent != self._last_percent:
            self._channel.send({"type": "progress", "id": self._id, "percent": percent})
            self._last_sent, self._last_percent = now, percent

    def is_canceled(self) -> bool:
        return self._cancel.is_set()

    def info(self, message: str) -> None:
        self.log("info", message)

    def warning(self, message: str) -> None:
        self.log("warning", message)

    def log(self, level: str, message: str) -> None:
        message = self._redact(message)
        self._channel.send({"type": "log", "id": self._id, "level": level, "message": message})


class _ForwardLogs(logging.Handler):
    """Engine log records of the running job go to the client as log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.progress: JobProgress | None = None

    def emit(self, record: logging.LogRecord) -> None:
        progress = self.progress
        if progress is not None:
            level = "warning" if record.levelno >= logging.WARNING else "info"
            progress.log(level, self.format(record))


def _read_commands(stream, jobs: queue.Queue, cancels: dict, lock: threading.Lock) -> None:
    """Reader thread: queue jobs, flag cancels at once (a job is running meanwhile).

    When the input closes, QGIS has gone: the running job is canceled too, so that nobody waits.
    """
    for line in stream:
        message = decode(line)
        if message is None:
            continue
        kind = message.get("type")
        if kind == "job":
            with lock:
                cancels.setdefault(str(message.get("id")), threading.Event())
            jobs.put(message)
        elif kind == "cancel":
            with lock:
                cancels.setdefault(str(message.get("id")), threading.Event()).set()
        elif kind == "shutdown":
            jobs.put(None)
            return
    with lock:
        for event in cancels.values():
            event.set()
    jobs.put(None)


def serve(idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S) -> int:
    """Run jobs until shutdown, end of input or the idle timeout; the process's main loop."""
    channel = Channel(os.fdopen(os.dup(sys.stdout.fileno()), "wb"))
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    forward = _ForwardLogs()
    forward.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(forward)
    log.setLevel(logging.INFO)
    log.propagate = False

    jobs: queue.Queue = queue.Queue()
    cancels: dict[str, threading.Event] = {}
    lock = threading.Lock()
    reader = threading.Thread(
        target=_read_commands,
        args=(sys.stdin.buffer, jobs, cancels, lock),
        name="mus-worker-stdin",
        daemon=True,
    )
    reader.start()
    channel.send(
        {
            "type": "ready",
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "python": sys.executable,
            "version": plugin_version(),
        }
    )
    from ..jobs import registered

    known_jobs = registered()

    while True:
        try:
            message = jobs.get(timeout=idle_timeout_s if idle_timeout_s > 0 else None)
        except queue.Empty:
            return 0  # idle for too long: free the memory a loaded model holds
        if message is None:
            return 0
        job_id = str(message.get("id"))
        with lock:
            cancel = cancels.setdefault(job_id, threading.Event())
        redact = job_secret_redactor(message.get("params") or {})
        progress = JobProgress(channel, job_id, cancel, redact)
        forward.progress = progress
        try:
            run = known_jobs.get(str(message.get("job")))
            if run is None:
                raise MusError(f"The engine has no job {message.get('job')!r}.")
            if cancel.is_set():
                raise CanceledError()
            result = run(message.get("params") or {}, progress)
            channel.send({"type": "result", "id": job_id, "result": result or {}})
        except BaseException as exc:  # every failure is an answer; the worker lives on
            channel.send(_error_message(job_id, exc, redact))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                return 1
        finally:
            forward.progress = None
            with lock:
                cancels.pop(job_id, None)


def job_secret_redactor(params: dict):
    """A function that blanks the job's own secrets (its credentials, as given, trimmed and as
    Python quotes them) out of any text: the last guard before a message leaves the worker."""
    return secret_redactor(str(v) for v in (params.get("credentials") or {}).values() if v)


def _error_message(job_id: str, exc: BaseException, redact=lambda text: text) -> dict:
    user_error = isinstance(exc, MusError)
    return {
        "type": "error",
        "id": job_id,
        "error": type(exc).__name__,
        "message": redact(str(exc) or type(exc).__name__),
        "user_error": user_error,
        "canceled": isinstance(exc, CanceledError),
        "traceback": "" if user_error else redact(traceback.format_exc()),
    }
