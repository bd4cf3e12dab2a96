"""The read and write API under /api/v1/, served by django-ninja from the declarations
(reporting.catalog's KPIs, reporting.case_api's case resources). Its OpenAPI document is
generated (reporting.openapi)."""
from django.urls import URLPattern
from ninja import NinjaAPI

from reporting import case_api, catalog
from reporting.api import install_problem_handlers

api = NinjaAPI(
    title="OpsView API", version="1",
    description="Ingestion of signed CloudEvents webhooks, the read API of KPIs and exception "
                "cases, and the triage actions on cases. Every rejection is an RFC 9457 "
                "problem document. The contract is docs/api.md.",
    # /api/schema/ and /api/docs/ are served by reporting.openapi, with the ingestion paths.
    openapi_url=None, docs_url=None)
install_problem_handlers(api)
api.add_router("", catalog.kpi_router())
for router in case_api.case_routers():
    api.add_router("", router)

# Without ninja's namespace, so the URL names (kpi-wip, api-exceptions, ...) stay global;
# without its root view, which answers at /api/v1/ itself (nothing is served there).
urlpatterns = [route for route in api.urls[0]
               if not (isinstance(route, URLPattern) and route.name == "api-root")]
