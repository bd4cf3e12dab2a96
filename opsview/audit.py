"""The security audit trail: one call per security-relevant change."""
import functools
import ipaddress
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from .models import AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(network, strict=False) for network in trusted]


def _is_trusted_proxy(address: str) -> bool:
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(peer in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address: the peer Django saw, unless that peer is a trusted proxy
    (TRUSTED_PROXIES, e.g. the nginx in front), whose X-Real-IP header names the client.
    The header is the client's own claim from anyone else, and then ignored."""
    if request is None:
        return None
    peer = request.META.get("REMOTE_ADDR") or None
    if peer and _is_trusted_proxy(peer):
        forwarded = request.META.get("HTTP_X_REAL_IP", "").strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            return peer
    return peer


def record(action: str, target: str, *, request: HttpRequest | None = None,
           actor: AbstractBaseUser | None = None, actor_label: str = "",
           **detail: Any) -> AuditEvent:
    """Append one audit event. `actor` defaults to the request's user; commands pass a label."""
    if actor is None and request is not None and request.user.is_authenticated:
        actor = request.user
    return AuditEvent.objects.create(
        actor=cast("User | None", actor),  # AUTH_USER_MODEL is Django's User
        actor_label=actor_label or (actor.get_username() if actor else "anonymous"),
        action=action,
        target=target,
        remote_addr=client_ip(request),
        detail=detail,
    )
