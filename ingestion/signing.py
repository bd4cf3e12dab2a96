"""Standard Webhooks signing and verification (standardwebhooks.com), pure functions.

The signed content is "{webhook-id}.{webhook-timestamp}.{body}"; the key is the
base64-decoded part of a `whsec_` secret; the header holds space-separated `v1,<base64>`
signatures. Svix, the most widely deployed sender, names the same three headers `svix-id`,
`svix-timestamp` and `svix-signature` by default: they are accepted as aliases. The webhook
view and the simulator both use this module.
"""
import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"


HEADER_SETS = [("webhook-id", "webhook-timestamp", "webhook-signature"),
               ("svix-id", "svix-timestamp", "svix-signature")]


def signature_headers(headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(id, timestamp, signature) from the first complete set of header names in
    HEADER_SETS; a set is taken whole, never mixed with another. Missing values are None."""
    for id_name, timestamp_name, signature_name in HEADER_SETS:
        values = (headers.get(id_name), headers.get(timestamp_name),
                  headers.get(signature_name))
        if all(values):
            return values
    id_name, timestamp_name, signature_name = HEADER_SETS[0]
    return headers.get(id_name), headers.get(timestamp_name), headers.get(signature_name)


class VerificationError(Exception):
    """The request is not authentic. The reason is logged, never sent to the client."""


def secret_key(secret: str) -> bytes:
    """The key bytes of a `whsec_` secret (the prefix is optional)."""
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(encoded)


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The `v1,<base64>` signature of one message."""
    if isinstance(body, str):
        body = body.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, body: bytes | str,
                   timestamp: int | float | None = None) -> dict[str, str]:
    """The three headers a sender adds to a request."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secrets: Iterable[str], msg_id: str | None, timestamp: str | None,
           signature_header: str | None, body: bytes, *, now: float | None = None,
           tolerance: int = 300) -> None:
    """Raise VerificationError unless one `v1` signature matches one of `secrets`."""
    if not msg_id or not timestamp or not signature_header:
        raise VerificationError("missing webhook headers")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise VerificationError("timestamp is not an integer") from None
    now = time.time() if now is None else now
    if abs(now - sent_at) > tolerance:
        raise VerificationError("timestamp outside tolerance")
    candidates = [
        part.split(",", 1)[1].encode()
        for part in signature_header.split()
        if part.startswith("v1,")
    ]
    for secret in secrets:
        try:
            expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1].encode()
        except (ValueError, TypeError):
            continue  # a malformed stored secret verifies nothing
        # Compare against every candidate so timing does not reveal which one matched.
        matched = False
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
        if matched:
            return
    raise VerificationError("no matching signature")
