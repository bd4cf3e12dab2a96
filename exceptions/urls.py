from django.urls import path

app_name = "exceptions"
urlpatterns: list = []
