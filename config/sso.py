"""Single sign-on with OpenID Connect (mozilla-django-oidc), on when OIDC_RP_CLIENT_ID is
set. The provider's role claim (OIDC_ROLE_CLAIM) maps to OpsView's roles (OIDC_ROLE_MAP):
the role groups finance_ops, delivery_ops, integration and executive, and `admin`, which
makes a staff superuser. Password login stays."""
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import Group, User
from django.http import Http404, HttpRequest, HttpResponse
from mozilla_django_oidc import views as oidc
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from opsview import audit

ROLE_GROUPS = {"finance_ops", "delivery_ops", "integration", "executive"}
ADMIN = "admin"


def mapped_roles(claims: dict[str, Any]) -> set[str]:
    """OpsView roles named by the claims, through OIDC_ROLE_MAP."""
    values = claims.get(settings.OIDC_ROLE_CLAIM) or []
    if isinstance(values, str):
        values = values.split()
    return {settings.OIDC_ROLE_MAP[value] for value in values
            if isinstance(value, str) and value in settings.OIDC_ROLE_MAP}


class RoleMappingBackend(OIDCAuthenticationBackend):
    """Users are matched by e-mail (the library's default), created on first login, and
    their role groups set from the provider's claims at every login: a role the provider
    takes away is taken away here too."""

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        """Verified email, and a mapped role unless OIDC_REQUIRE_ROLE is off."""
        if not super().verify_claims(claims):
            return False
        return bool(mapped_roles(claims)) or not settings.OIDC_REQUIRE_ROLE

    def create_user(self, claims: dict[str, Any]) -> User:
        """A new user from the provider's claims, its roles mapped."""
        username = (claims.get("preferred_username") or claims.get("email", ""))[:150]
        if self.UserModel.objects.filter(username=username).exists():
            username = self.get_username(claims)  # the library's hash: never someone else
        user = self.UserModel.objects.create_user(username, email=claims.get("email", ""))
        audit.record("sso.user_created", f"user:{user.username}", actor=user,
                     roles=sorted(mapped_roles(claims)))
        return self.update_user(user, claims)

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        """The user's name, email and roles as the provider now says."""
        roles = mapped_roles(claims)
        user.first_name = str(claims.get("given_name", user.first_name))[:150]
        user.last_name = str(claims.get("family_name", user.last_name))[:150]
        user.is_staff = user.is_superuser = ADMIN in roles
        user.save()
        managed = Group.objects.filter(name__in=ROLE_GROUPS)
        user.groups.remove(*managed.exclude(name__in=roles))
        user.groups.add(*managed.filter(name__in=roles))
        return user


def _when_enabled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @login_not_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.OIDC_ENABLED:
            raise Http404("single sign-on is not configured")
        return view(request, *args, **kwargs)

    return wrapper


authenticate = _when_enabled(oidc.OIDCAuthenticationRequestView.as_view())
callback = _when_enabled(oidc.OIDCAuthenticationCallbackView.as_view())
