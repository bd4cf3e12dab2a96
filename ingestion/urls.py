from django.contrib.auth.decorators import login_not_required
from django.urls import path

from . import views

app_name = "ingestion"
urlpatterns = [
    path("<str:source>/events", login_not_required(views.webhook), name="webhook"),
    path("schemas/", login_not_required(views.schema_catalog), name="schemas"),
    path("schemas/<str:event_type>.json", login_not_required(views.schema_detail),
         name="schema"),
]
