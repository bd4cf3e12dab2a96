"""Log-in, throttled: failures counted per username and per address in the shared cache."""
import logging
import math
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from core.throttle import FixedWindow
from opsview import audit

log = logging.getLogger(__name__)


class FailureCounter(FixedWindow):
    """Failed attempts per key in a fixed window; `limit` of them block the key until the
    window ends. With the cache away nobody is blocked, and the password check still stands."""

    def __init__(self, prefix: str, limit: int, window_seconds: int) -> None:
        super().__init__(prefix, window_seconds)
        self.limit = limit

    def blocked_for(self, key: str) -> int:
        """Seconds the key stays blocked (0: not blocked)."""
        """Seconds until the key may try again, or 0."""
        if not self.limit or self.count(key) < self.limit:
            return 0
        return self.seconds_left()

    def fail(self, key: str) -> int:
        """Count one failure; the failures so far in this window."""
        return self.hit(key) or 0


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class LoginView(auth_views.LoginView):
    """Django's login, throttled: after LOGIN_FAILURE_LIMIT failures for one username, or
    LOGIN_IP_FAILURE_LIMIT from one address, within LOGIN_FAILURE_WINDOW seconds, further
    attempts get 429 with Retry-After until the window ends, right password or not."""

    template_name = "registration/login.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """The login form's context, with whether single sign-on is offered and failed."""
        # Single sign-on, when configured, beside the password form (config/sso.py).
        return super().get_context_data(sso_enabled=settings.OIDC_ENABLED,
                                         sso_failed="sso" in self.request.GET, **kwargs)

    def counters(self) -> list[tuple[FailureCounter, str]]:
        """The failure counters this attempt counts against, each with its key."""
        window = settings.LOGIN_FAILURE_WINDOW
        username = (self.request.POST.get("username") or "").strip().lower()[:150]
        return [
            (FailureCounter("login-user", settings.LOGIN_FAILURE_LIMIT, window), username),
            (FailureCounter("login-ip", settings.LOGIN_IP_FAILURE_LIMIT, window),
             audit.client_ip(self.request) or "unknown"),
        ]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """The login attempt, or 429 with Retry-After while a counter blocks it."""
        wait = max(counter.blocked_for(key) for counter, key in self.counters())
        if wait:
            # An unbound form: the password is not even checked while throttled.
            form = self.get_form_class()(request)
            message = ("Too many failed log-in attempts. Try again in "
                       f"{math.ceil(wait / 60)} minute(s).")
            context = self.get_context_data(form=form, throttled=message)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        """A failed attempt: counted against the username and the address."""
        for counter, key in self.counters():
            if counter.fail(key) == counter.limit:
                log.warning("login throttled: %s %r", counter.prefix, key)
                audit.record("login.throttled", f"{counter.prefix}:{key}", request=self.request)
        return super().form_invalid(form)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        """A successful log-in: the username's failures are forgotten."""
        user_counter, username = self.counters()[0]
        user_counter.reset(username)
        return super().form_valid(form)
