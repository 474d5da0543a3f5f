"""The host's URLs: its own pages, and the Responses API under ``llm/``."""

from django.http import HttpResponse
from django.urls import include, path


def home(request):  # noqa: ANN001, ANN201 - a stand-in for the host's own pages
    return HttpResponse("the host site")


urlpatterns = [
    path("", home),
    path("llm/", include("responses_app.urls")),
]
