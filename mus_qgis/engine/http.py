"""HTTP for imagery services: retries with backoff, cancel within a second, secrets redacted.

Retried: timeouts, dropped connections, 429 (honouring Retry-After), 5xx and answers a service
marks as transient (Mapillary's code 4). Every message that can reach a user passes through
:meth:`Http.redact`, so keys, tokens and signatures never appear in logs or errors.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .deps import require
from .errors import CanceledError, CredentialsError, ServiceError
from .progress import Progress

_SECRET_PARAMS = re.compile(r"((?:key|signature|access_token|token|client_secret)=)[^&\s'\"]+", re.I)
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with full jitter, or the server's Retry-After when it gives one."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


@dataclass
class Http:
    """A small, thread-safe HTTP client (one requests session per thread)."""

    secrets: list[str] = field(default_factory=list)
    proxies: dict[str, str] | None = None
    user_agent: str = "mus_qgis"
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    progress: Progress | None = None

    def __post_init__(self) -> None:
        require("requests")
        self._local = threading.local()
        self.counts = {"requests": 0, "retries": 0}
        self._count_lock = threading.Lock()

    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self.user_agent
            if self.proxies:
                session.proxies.update(self.proxies)
            self._local.session = session
        return session

    def redact(self, text: str) -> str:
        text = _SECRET_PARAMS.sub(r"\1***", str(text))
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def canceled(self) -> bool:
        return bool(self.progress and self.progress.is_canceled())

    def sleep(self, seconds: float) -> None:
        """Sleep in short slices, so that a cancel is honoured within a fraction of a second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.canceled():
                raise CanceledError()
            time.sleep(min(left, 0.1))

    def get(self, url: str, *, params=None, headers=None,
            transient: Callable[[object], bool] | None = None,
            credentials_rejected: Callable[[object], bool] | None = None):
        """GET with retries; returns the final response (any status the caller must judge)."""
        import requests

        last_problem = ""
        for attempt in range(self.policy.attempts):
            if self.canceled():
                raise CanceledError()
            with self._count_lock:
                self.counts["requests"] += 1
                self.counts["retries"] += attempt > 0
            try:
                response = self._session().get(url, params=params, headers=headers,
                                               timeout=self.policy.timeout)
                content = response.content  # read it all here: a dropped body is retried
            except (requests.Timeout, requests.ConnectionError,
                    requests.exceptions.ChunkedEncodingError) as exc:
                last_problem = f"{type(exc).__name__}"
                self.sleep(self.policy.delay(attempt))
                continue
            expected = response.headers.get("Content-Length")
            if expected and expected.isdigit() and int(expected) != len(content):
                last_problem = "truncated answer"
                self.sleep(self.policy.delay(attempt))
                continue
            if credentials_rejected is not None and credentials_rejected(response):
                raise CredentialsError(self.redact(
                    f"The service refused the credentials (HTTP {response.status_code}) for "
                    f"{response.url}: {_short(response)}"), response.status_code)
            if response.status_code in _TRANSIENT_STATUS or (transient and transient(response)):
                last_problem = f"HTTP {response.status_code}"
                self.sleep(self.policy.delay(attempt, _retry_after(response)))
                continue
            return response
        raise ServiceError(self.redact(
            f"{url} still failing after {self.policy.attempts} attempts ({last_problem})"))

    def get_json(self, url: str, **kwargs) -> dict:
        """GET and parse JSON, retrying answers that are not JSON (a proxy's error page)."""
        for attempt in range(self.policy.attempts):
            response = self.get(url, **kwargs)
            try:
                return response.json()
            except ValueError:
                if response.status_code >= 400:
                    raise ServiceError(self.redact(
                        f"HTTP {response.status_code} from {response.url}: {_short(response)}"),
                        response.status_code) from None
                self.sleep(self.policy.delay(attempt))
        raise ServiceError(self.redact(f"{url} keeps answering with something that is not JSON"))


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None


def _short(response) -> str:
    return response.text[:200].replace("\n", " ") if response.content else "(empty answer)"


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that a kill at any moment leaves either the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def image_decodes(data_or_path) -> bool:
    """Whether bytes or a file hold a whole image (a truncated JPEG does not decode)."""
    import io

    from PIL import Image

    try:
        source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
        with Image.open(source) as image:
            image.draft("RGB", (64, 64))
            image.load()
        return True
    except Exception:
        return False
