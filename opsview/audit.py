"""The security audit trail: one call per security-relevant change."""
from .models import AuditEvent


def client_ip(request):
    """The peer address Django saw (a proxy's X-Forwarded-For is not trusted here)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(action, target, *, request=None, actor=None, actor_label="", **detail):
    """Append one audit event. `actor` defaults to the request's user; commands pass a label."""
    if actor is None and request is not None and request.user.is_authenticated:
        actor = request.user
    return AuditEvent.objects.create(
        actor=actor,
        actor_label=actor_label or (actor.get_username() if actor else "anonymous"),
        action=action,
        target=target,
        remote_addr=client_ip(request),
        detail=detail,
    )
