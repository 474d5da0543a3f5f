"""URLs of the management API; include them at any prefix (the site uses ``manage/v1/``).

``schema/`` serves the OpenAPI document (YAML, or JSON with ``?format=json``).
"""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import APIRootView, DefaultRouter

from responses_app.manage import views
from responses_app.manage.permissions import IsStaff

app_name = "openresponses_manage"


class RootView(APIRootView):
    """The OpenResponses management API (the OpenAPI document is at schema/; see docs/management.md)."""

    permission_classes = [IsStaff]
    schema = None


class Router(DefaultRouter):
    APIRootView = RootView


router = Router()
router.register("providers", views.ProviderViewSet, basename="provider")
router.register("routes", views.RoutingRuleViewSet, basename="route")
router.register("keys", views.ClientKeyViewSet, basename="key")
router.register("usage", views.UsageViewSet, basename="usage")
router.register("responses", views.ResponseViewSet, basename="response")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(permission_classes=[IsStaff]), name="schema"),
    path("", include(router.urls)),
]
