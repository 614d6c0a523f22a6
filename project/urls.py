from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chat.urls")),
]

handler404 = "chat.views.not_found"
handler500 = "chat.views.server_error"
