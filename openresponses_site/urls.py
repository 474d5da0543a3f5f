"""Site URLs: the Responses API at the root, the management API under /manage/v1/, the admin under /admin/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("manage/v1/", include("responses_app.manage.urls")),
    path("", include("responses_app.urls")),
]
