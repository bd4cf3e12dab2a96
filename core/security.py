"""Response hardening that neither Django nor django-csp sends.

The Content-Security-Policy comes from django-csp (`csp.middleware.CSPMiddleware`, configured
by `CONTENT_SECURITY_POLICY` in config/settings.py) and Cross-Origin-Opener-Policy from
Django's SecurityMiddleware (`SECURE_CROSS_ORIGIN_OPENER_POLICY`); Permissions-Policy has no
setting in either, so this middleware sends it.
"""
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


class PermissionsPolicyMiddleware:
    """Sets Permissions-Policy (settings.PERMISSIONS_POLICY) on every response that does not
    set its own: the pages use no camera, microphone, location or payment API."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.header = settings.PERMISSIONS_POLICY

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", self.header)
        return response
