"""Response hardening.

The Content-Security-Policy lets a page run only the scripts the app serves itself (htmx,
plotly.js, the app's own files): no inline script, no eval, no third-party origin.
"""
from django.conf import settings


def content_security_policy():
    return "; ".join(f"{name} {value}" for name, value in settings.CONTENT_SECURITY_POLICY.items())


class ContentSecurityPolicyMiddleware:
    """Sets Content-Security-Policy on every response that does not set its own."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.header = content_security_policy()

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.header)
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy",
                                    "camera=(), microphone=(), geolocation=(), payment=()")
        return response
