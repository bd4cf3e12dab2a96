"""Read API routes under /api/v1/."""
from django.urls import include, path

urlpatterns = [
    path("", include("exceptions.api_urls")),
]
