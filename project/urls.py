from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Sign-in and sign-out pages (templates/registration/login.html).
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("chat.urls")),
]

handler500 = "chat.views.server_error"
