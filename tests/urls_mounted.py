"""A host project's URLconf: the app mounted under /assistant/ (tests/test_accounts.py)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("assistant/", include("chat.urls")),
]
