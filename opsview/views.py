"""Pages of the business-state domain."""
from django.shortcuts import render


def home(request):
    return render(request, "opsview/home.html")
