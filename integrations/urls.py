from django.urls import path

from . import views

app_name = "integrations"
urlpatterns = [
    path("cases/<int:pk>/retry", views.request_retry, name="retry"),
    path("cases/retry", views.request_retries, name="retry-bulk"),
]
