"""The host's URLs: the Responses API under ``llm/``, the management API under ``ops/``."""

from django.http import HttpResponse
from django.urls import include, path


def home(request):  # noqa: ANN001, ANN201 - a stand-in for the host's own pages
    return HttpResponse("the DRF host site")


urlpatterns = [
    path("", home),
    path("llm/", include("responses_app.urls")),
    path("ops/", include("responses_app.manage.urls")),
]
