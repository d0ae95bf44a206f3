"""Events as HTTP POSTs of their JSON to a URL (standard library ``http.client``), from a worker thread.

Each URL gets its own publisher, so one slow receiver delays no other. A delivery that fails (no
connection, a timeout, a status other than 2xx) is tried again after 0.5 s, 1 s, 2 s, … up to
``retries`` times, then given up and counted as ``failed``; a full queue drops and counts. With a
shared secret every request carries ``X-Wscnet-Signature: sha256=<hex HMAC-SHA256 of the body>``.
"""

import hashlib
import hmac
import http.client
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import RuntimeUserError, log
from ..events import Event
from .base import DEFAULT_QUEUE, QueuedPublisher, backoff_delays

SIGNATURE_HEADER = "X-Wscnet-Signature"
EVENT_HEADER = "X-Wscnet-Event"
FIRST_RETRY_S, MAX_RETRY_S = 0.5, 8.0


@dataclass(frozen=True)
class WebhookSettings:
    urls: tuple[str, ...]
    secret: str | None = None
    timeout_s: float = 5.0
    retries: int = 3
    queue: int = DEFAULT_QUEUE


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuntimeUserError(f"--webhook {url!r}: expected an http:// or https:// URL")
    try:
        _ = parts.port
    except ValueError:
        raise RuntimeUserError(f"--webhook {url!r}: the port is not a number in 1-65535") from None
    return url


def signature(secret: str, body: bytes) -> str:
    """The header value a receiver recomputes with the same secret to trust the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookPublisher(QueuedPublisher):
    name = "webhook"

    def __init__(self, url: str, settings: WebhookSettings) -> None:
        self.url, self.settings = check_url(url), settings
        self.parts = urlsplit(url)
        self._failing = False
        super().__init__(settings.queue)

    def describe(self) -> str:
        return f"webhook {self.parts.scheme}://{self.parts.netloc}{self.parts.path}"

    def deliver(self, event: Event) -> None:
        body = json.dumps(event.to_dict(), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", EVENT_HEADER: event.type}
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = signature(self.settings.secret, body)
        delays = backoff_delays(FIRST_RETRY_S, MAX_RETRY_S)
        for attempt in range(self.settings.retries + 1):
            problem = self._post(body, headers)
            if problem is None:
                self.count("sent")
                self._recovered()
                return
            if attempt == self.settings.retries or not self.pause(next(delays)):
                break
            self.count("retries")
        self.count("failed")
        if not self._failing:
            self._failing = True
            log.warning(f"{self.describe()}: gave up on an event after {self.settings.retries} retries ({problem})")

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info(f"{self.describe()}: delivering again")

    def _post(self, body: bytes, headers: dict) -> str | None:
        """One POST; None when the receiver took it (2xx), else what went wrong."""
        target = (self.parts.path or "/") + (f"?{self.parts.query}" if self.parts.query else "")
        if self.parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                self.parts.hostname,
                self.parts.port,
                timeout=self.settings.timeout_s,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(self.parts.hostname, self.parts.port, timeout=self.settings.timeout_s)
        try:
            conn.request("POST", target, body=body, headers=headers)
            reply = conn.getresponse()
            reply.read()
            return None if 200 <= reply.status < 300 else f"HTTP {reply.status}"
        except (OSError, http.client.HTTPException) as exc:
            return str(exc) or type(exc).__name__
        finally:
            conn.close()
