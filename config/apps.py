"""django.contrib.admin under OpsView's name."""
from django.contrib.admin import apps as admin_apps


class OpsViewAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with OpsView's branded site."""

    default = False
    default_site = "config.admin_site.OpsViewAdminSite"
