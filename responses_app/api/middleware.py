"""``ApiFastPathMiddleware``: API requests skip the rest of the middleware stack.

Django runs sync-style middleware (sessions, CSRF, auth, messages…) in a worker thread for
async views — several thread hops per request that the Responses API never uses (it has its
own authentication and error handling). Put this first in ``MIDDLEWARE``: requests that
resolve to an API view go straight to it; everything else (the admin) takes the normal path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_resolver


class ApiFastPathMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self._api_view(request)
        if view is not None:
            func, args, kwargs = view
            return await func(request, *args, **kwargs)
        return await self.get_response(request)

    @staticmethod
    def _api_view(request: HttpRequest) -> tuple[Any, tuple, dict] | None:
        try:
            match = get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
        except Resolver404:
            return None
        if not getattr(match.func, "openresponses_api", False):
            return None
        request.resolver_match = match
        return match.func, match.args, match.kwargs
