from django.urls import path

from . import views

app_name = "exceptions"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("export.csv", views.export_csv, name="export"),
    path("bulk", views.bulk, name="bulk"),
    path("undo/<int:pk>", views.undo, name="undo"),
    path("suggest/<str:kind>", views.suggest, name="suggest"),
    path("views/", views.views_panel, name="views"),
    path("views/save", views.save_view, name="save-view"),
    path("views/<int:pk>/<str:change>", views.change_view, name="change-view"),
    path("<int:pk>/", views.detail, name="case"),
    path("<int:pk>/replay", views.replay, name="replay"),
    path("<int:pk>/correct/<int:event_pk>", views.correct, name="correct"),
    path("<int:pk>/<str:action>", views.act, name="act"),
]
