from django.urls import path

from reporting import case_api as api

urlpatterns = [
    path("exceptions", api.case_list, name="api-exceptions"),
    path("exceptions.csv", api.case_csv, name="api-exceptions-csv"),
    path("exceptions/<int:id>/actions", api.case_action, name="api-exception-actions"),
    path("kpis/exceptions", api.exceptions_kpi, name="kpi-exceptions"),
]
