"""Outbound HTTP to addresses an admin configured: the one way OpsView posts to a receiver.

A configured URL reaches what the admin wrote and nothing more: http and https only, no
redirects followed (a receiver cannot bounce the request elsewhere), a connect and read
time-out, and at most a few kilobytes of the answer read (a receiver cannot make a worker
hold a large or endless body).
"""
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.core.exceptions import ValidationError

SCHEMES = ("http", "https")
ANSWER_BYTES = 4096


def validate_url(url: str | None) -> None:
    """Raise ValidationError unless `url` is an absolute http(s) URL with a host."""
    parts = urlsplit(url or "")
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise ValidationError("must be an http:// or https:// URL with a host")


@dataclass
class Answer:
    """What a receiver said: a status code and the start of its body, or the error that
    prevented an answer (status None)."""

    status: int | None
    body: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status is not None and 200 <= self.status < 300

    def summary(self) -> str:
        """One line for a log or an admin list: the status and the body's start, or the error."""
        if self.status is None:
            return f"no answer: {self.error}"
        return f"HTTP {self.status} {self.body[:200]}".strip()


def post(url: str, body: bytes, headers: dict[str, str], *,
         timeout: float | tuple[float, float] = (3.05, 10)) -> Answer:
    """POST `body` (bytes) to `url`; never raises for what the network or receiver does."""
    try:
        validate_url(url)
    except ValidationError as error:
        return Answer(None, error=error.messages[0])
    try:
        with requests.post(url, data=body, headers=headers, timeout=timeout,
                           allow_redirects=False, stream=True) as response:
            head = response.raw.read(ANSWER_BYTES, decode_content=True) or b""
            return Answer(response.status_code, head.decode("utf-8", "replace"))
    except requests.RequestException as error:
        return Answer(None, error=type(error).__name__)
