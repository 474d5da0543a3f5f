"""API errors in the spec's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type or default_type(status)
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_response(self) -> HttpResponse:
        response = HttpResponse(json.dumps(self.body()), status=self.status, content_type="application/json")
        for key, value in self.headers.items():
            response[key] = value
        return response


def default_type(status: int) -> str:
    if status == 404:
        return "not_found"
    if status == 429:
        return "too_many_requests"
    if status in (401, 403):
        return "authentication_error" if status == 401 else "permission_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def invalid(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def not_found(message: str, param: str | None = None, code: str = "not_found") -> ApiError:
    return ApiError(404, message, param=param, code=code)


def from_upstream(exc: Any) -> ApiError:
    """An :class:`ApiError` from a provider's ``UpstreamError``."""
    headers = {}
    if exc.status == 429:
        headers["Retry-After"] = str(max(1, int(round(exc.retry_after or 1))))
    return ApiError(
        exc.status, exc.message, param=exc.param, code=exc.code, error_type=exc.error_type, headers=headers
    )
