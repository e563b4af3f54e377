"""HTTP for imagery services: retries with backoff, cancel within a second, secrets redacted.

Retried: timeouts, dropped connections, 429 (honouring Retry-After), 5xx and answers a service
marks as transient (Mapillary's code 4). Not retried: a host name that does not resolve (a name
the DNS does not know stays unknown on a second try). Every message that can reach a user passes
through :meth:`Http.redact`, so keys, tokens and signatures never appear in logs or errors.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

from ...shared.errors import CanceledError, CredentialsError, ServiceError, secret_redactor
from ...shared.progress import Progress
from ..deps import require

_SECRET_PARAMS = re.compile(
    r"((?:key|signature|access_token|token|client_secret)=)[^&\s'\"]+", re.I
)
# Line breaks and other control characters (a tab aside), which no HTTP header value may hold.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_REDIRECT_STATUS = {301, 302, 303, 307, 308}
# The longest a whole answer may take, in timeouts (each of which bounds one wait for bytes).
ANSWER_TIME_IN_TIMEOUTS = 4


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 30.0
    # Retries a whole run may spend: a service that fails every other request would otherwise
    # cost each of its failures the full attempts (the breaker catches failures in a row only).
    run_retry_budget: int = 200

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with full jitter, or the server's Retry-After when it gives one."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


@dataclass
class Response:
    """What the sources need of an answer (the body is read in full)."""

    status_code: int
    content: bytes
    headers: dict
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


@dataclass
class Http:
    """A small, thread-safe HTTP client: one kept-alive connection per thread and host.

    Not requests: at hundreds of requests a second its own work per call (three times
    urllib3's) is what limits the rate. urllib3 serves proxies; without one, plain http.client.
    """

    secrets: list[str] = field(default_factory=list)
    proxies: dict[str, str] | None = None
    user_agent: str = "mus_qgis"
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    progress: Progress | None = None
    max_connections: int = 64

    def __post_init__(self) -> None:
        self._blank_secrets = secret_redactor(self.secrets)
        require("urllib3")
        import urllib3

        # urllib3 only carries requests through a proxy; without one, http.client does.
        proxy = (self.proxies or {}).get("https") or (self.proxies or {}).get("http")
        self._pool = None
        if proxy:
            options = {
                "maxsize": self.max_connections,
                "num_pools": 16,
                "headers": {"User-Agent": self.user_agent},
            }
            if proxy.startswith("socks"):
                from urllib3.contrib.socks import SOCKSProxyManager

                self._pool = SOCKSProxyManager(proxy, **options)
            else:
                self._pool = urllib3.ProxyManager(proxy, **options)
        self.counts = {"requests": 0, "retries": 0}
        self._count_lock = threading.Lock()
        self._local = threading.local()
        # Every connection of every thread, so that close() ends them all (a worker thread's
        # connections would otherwise outlive the run as "unclosed socket" warnings).
        self._all_connections: list = []

    def close(self) -> None:
        """Close every kept-alive connection; the client can still be used afterwards."""
        with self._count_lock:
            connections, self._all_connections = self._all_connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()
        if self._pool is not None:
            self._pool.clear()

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def redact(self, text: str) -> str:
        return self._blank_secrets(_SECRET_PARAMS.sub(r"\1***", str(text)))

    def canceled(self) -> bool:
        return bool(self.progress and self.progress.is_canceled())

    def sleep(self, seconds: float) -> None:
        """Sleep in short slices, so that a cancel is honoured within a fraction of a second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.canceled():
                raise CanceledError()
            time.sleep(min(left, 0.1))

    def _fetch(self, url: str, params, headers) -> Response:
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        headers = {"User-Agent": self.user_agent, **(headers or {})}
        if self._pool is not None:
            import urllib3

            answer = self._pool.request(
                "GET",
                url,
                headers=headers,
                retries=False,
                preload_content=True,
                timeout=urllib3.Timeout(connect=self.policy.timeout, read=self.policy.timeout),
            )
            return Response(answer.status, answer.data, dict(answer.headers), url)
        # Without a proxy, http.client on one kept-alive connection per thread and host: at
        # hundreds of requests a second urllib3's own URL parsing is what limits the rate.
        parts = urlsplit(url)
        target = f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}"
        key = (parts.scheme, parts.hostname, parts.port)
        connection = self._connection(*key)
        try:
            deadline = time.monotonic() + self.policy.timeout * ANSWER_TIME_IN_TIMEOUTS
            connection.request("GET", target, headers=headers)
            answer = connection.getresponse()
            # The timeout bounds each wait for bytes; a server that trickles them (a byte every
            # few seconds) is bounded by a deadline for the whole answer.
            chunks = []
            while chunk := answer.read1(1 << 16):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the answer took more than {ANSWER_TIME_IN_TIMEOUTS} × the timeout"
                    )
            chunks.append(answer.read())  # marks the answer done, so the connection is reused
            body = b"".join(chunks)
        except BaseException:
            self._drop_connection(key)
            raise
        if answer.will_close:
            self._drop_connection(key)
        return Response(answer.status, body, dict(answer.getheaders()), url)

    def _connection(self, scheme: str, host: str, port: int | None):
        import http.client

        connections = self._local.__dict__.setdefault("connections", {})
        key = (scheme, host, port)
        if key not in connections:
            if scheme == "https":
                connections[key] = http.client.HTTPSConnection(
                    host, port, timeout=self.policy.timeout, context=_ssl_context()
                )
            else:
                connections[key] = http.client.HTTPConnection(
                    host, port, timeout=self.policy.timeout
                )
            with self._count_lock:
                self._all_connections.append(connections[key])
        return connections[key]

    def _drop_connection(self, key: tuple) -> None:
        connection = self._local.__dict__.get("connections", {}).pop(key, None)
        if connection is not None:
            connection.close()
            with self._count_lock:
                if connection in self._all_connections:
                    self._all_connections.remove(connection)

    def get(
        self,
        url: str,
        *,
        params=None,
        headers=None,
        transient: Callable[[Response], bool] | None = None,
        credentials_rejected: Callable[[Response], bool] | None = None,
        follow_redirects: bool = False,
    ) -> Response:
        """GET with retries; returns the final response (any status the caller must judge).

        ``follow_redirects`` is for requests that carry no key (an image on a CDN, a federated
        catalogue's picture on its instance): up to 5 hops, to any host."""
        import http.client

        import urllib3

        if headers and any(_CONTROL_CHARACTER.search(str(v)) for v in headers.values()):
            # http.client would refuse the header with a message that quotes its value, key or
            # token included; the only header values here that come from a user are credentials.
            raise CredentialsError(
                "The key or token holds a character not allowed in a request (a line break "
                "or control character): check the authentication configuration."
            )
        last_problem = ""
        hops = 0
        redirected = ""  # who sent the request to the current URL, and how
        attempt = -1
        while (attempt := attempt + 1) < self.policy.attempts:
            if self.canceled():
                raise CanceledError()
            with self._count_lock:
                budget_spent = (
                    attempt > 0 and self.counts["retries"] >= self.policy.run_retry_budget
                )
                if not budget_spent:
                    self.counts["requests"] += 1
                    self.counts["retries"] += attempt > 0
            if budget_spent:
                raise ServiceError(
                    self.redact(
                        f"{url} failed ({last_problem}); not retried: the run has spent its "
                        f"{self.policy.run_retry_budget} retries"
                    )
                )
            try:
                response = self._fetch(url, params, headers)
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                unresolved = _name_not_resolved(exc)
                if unresolved is not None:
                    raise ServiceError(
                        self.redact(_unresolved_message(url, unresolved, redirected))
                    ) from exc
                last_problem = type(exc).__name__
                self.sleep(self.policy.delay(attempt))
                continue
            expected = response.headers.get("Content-Length", "")
            if expected.isdigit() and int(expected) != len(response.content):
                last_problem = "truncated answer"
                self.sleep(self.policy.delay(attempt))
                continue
            if credentials_rejected is not None and credentials_rejected(response):
                raise CredentialsError(
                    self.redact(
                        f"The service refused the credentials (HTTP {response.status_code}) for "
                        f"{response.url}: {_short(response)}"
                    ),
                    response.status_code,
                )
            if response.status_code in _REDIRECT_STATUS:
                target = urljoin(response.url, response.headers.get("Location", ""))
                where = urlsplit(target).hostname or "elsewhere"
                # The same host (a trailing slash, http to https) is followed for any request;
                # another host only for a request that carries no key: a service's API does not
                # send its callers elsewhere, and what does (a captive portal, a proxy's login
                # page) must not receive the key.
                same_host = where == urlsplit(url).hostname
                if (same_host or follow_redirects) and hops < 5:
                    hops += 1
                    attempt -= 1  # a hop is no failed attempt
                    redirected = f"{urlsplit(url).hostname} (HTTP {response.status_code})"
                    url, params = target, None
                    continue
                if hops >= 5:
                    raise ServiceError(
                        self.redact(f"{url} redirected more than 5 times (last to {where})"),
                        response.status_code,
                    )
                raise ServiceError(
                    self.redact(
                        f"{urlsplit(url).hostname} redirected the request to another host, "
                        f"{where} (HTTP {response.status_code}), which is not followed (no key "
                        "went there). Is a network login page in the way, or has the service "
                        "moved (set its URL)?"
                    ),
                    response.status_code,
                )
            if response.status_code in _TRANSIENT_STATUS or (transient and transient(response)):
                last_problem = f"HTTP {response.status_code}"
                self.sleep(self.policy.delay(attempt, _retry_after(response)))
                continue
            return response
        raise ServiceError(
            self.redact(
                f"{url} still failing after {self.policy.attempts} attempts ({last_problem})"
            )
        )

    def get_json(self, url: str, **kwargs) -> dict:
        """GET and parse JSON, retrying answers that are not JSON (a proxy's error page)."""
        for attempt in range(self.policy.attempts):
            response = self.get(url, **kwargs)
            try:
                return response.json()
            except ValueError:
                if response.status_code >= 400:
                    raise ServiceError(
                        self.redact(
                            f"HTTP {response.status_code} from {response.url}: {_short(response)}"
                        ),
                        response.status_code,
                    ) from None
                self.sleep(self.policy.delay(attempt))
        raise ServiceError(self.redact(f"{url} keeps answering with something that is not JSON"))


def _name_not_resolved(exc: BaseException) -> BaseException | None:
    """The DNS failure behind a connection error (``socket.gaierror``, or urllib3's
    ``NameResolutionError`` around it), or None when the error is another one, or the resolver
    only failed for now ("Temporary failure in name resolution", EAI_AGAIN: worth a retry)."""
    seen, found = set(), None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror):
            return None if exc.errno == getattr(socket, "EAI_AGAIN", -3) else exc
        if type(exc).__name__ == "NameResolutionError":
            found = exc  # the gaierror inside it, if any, decides
        exc = exc.__cause__ or exc.__context__
    return found


def _unresolved_message(url: str, exc: BaseException, redirected: str) -> str:
    host = urlsplit(url).hostname or url
    reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
    message = (
        f"the host name {host} does not resolve ({reason}): {url} not fetched, and not retried "
        "(a name the DNS does not know stays unknown on a second try)."
    )
    if redirected:
        return (
            f"{message} {redirected} redirected the request there: the image has moved to a "
            "host this machine cannot find."
        )
    return (
        f"{message} Check the service URL, and that this machine can look host names up (its "
        "network, its DNS)."
    )


_ssl_contexts: list = []


def _ssl_context():
    """One TLS context for all connections, with certifi's roots when it is there."""
    import ssl

    if not _ssl_contexts:
        try:
            import certifi

            _ssl_contexts.append(ssl.create_default_context(cafile=certifi.where()))
        except ImportError:
            _ssl_contexts.append(ssl.create_default_context())
    return _ssl_contexts[0]


def _retry_after(response: Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None


def _short(response) -> str:
    return response.text[:200].replace("\n", " ") if response.content else "(empty answer)"


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that a kill at any moment leaves either the whole file or none.

    No fsync: a killed process loses nothing that the kernel holds, and after a power cut a file
    that no longer decodes is fetched again (the cache checks every file it re-uses).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        with open(temporary, "xb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# Why an image does not decode, in the words a user reads.
DECODE_MISSING = "file not found"
DECODE_TOO_LARGE = "too large to decode safely (over Pillow's decompression-bomb limit)"
DECODE_DAMAGED = "truncated or damaged image data"


def decode_problem(data_or_path) -> str:
    """ "" when bytes or a file hold a whole image, else why not. Cheap: a JPEG is decoded at
    reduced scale (draft mode), which still reads every byte of its data."""
    import io

    from PIL import Image

    try:
        source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
        with Image.open(source) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except FileNotFoundError:
        return DECODE_MISSING
    except Image.DecompressionBombError:
        return DECODE_TOO_LARGE
    except Exception:  # "image file is truncated", broken data streams of every format
        return DECODE_DAMAGED
    return ""


def image_decodes(data_or_path) -> bool:
    """Whether bytes or a file hold a whole image (a truncated JPEG does not decode)."""
    return not decode_problem(data_or_path)
