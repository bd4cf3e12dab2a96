from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from config import login, sso
from exceptions import views as exception_views
from reporting import metrics, openapi, views

urlpatterns = [
    path("", views.home, name="home"),
    # Where the login lands: each role on its own work (LOGIN_REDIRECT_URL).
    path("start/", exception_views.start, name="start"),
    path("readiness/", views.page, {"name": "readiness"}, name="readiness"),
    path("wip/", views.page, {"name": "wip"}, name="wip"),
    path("latency/", views.page, {"name": "latency"}, name="latency"),
    path("integration/", views.page, {"name": "integration"}, name="integration"),
    path("margin/", views.page, {"name": "margin"}, name="margin"),
    path("close/", views.page, {"name": "close"}, name="close"),
    path("reconciliation/", views.page, {"name": "reconciliation"}, name="reconciliation"),
    path("billing/", views.page, {"name": "billing"}, name="billing"),
    path("trends/", views.page, {"name": "trends"}, name="trends"),
    path("items/<str:kind>/<path:item_id>/", views.item, name="item"),
    path("panels/<str:name>/", views.panel, name="panel"),
    path("accounts/login/", login.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/authenticate/", sso.authenticate, name="oidc_authentication_init"),
    path("oidc/callback/", sso.callback, name="oidc_authentication_callback"),
    path("admin/", admin.site.urls),
    path("ingest/", include("ingestion.urls")),
    path("api/schema/", openapi.schema_view, name="openapi"),
    path("api/docs/", openapi.docs_view, name="api-docs"),
    path("api/v1/", include("reporting.api_urls")),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("exceptions/", include("exceptions.urls")),
    path("integrations/", include("integrations.urls")),
]

handler500 = "core.errors.server_error"
