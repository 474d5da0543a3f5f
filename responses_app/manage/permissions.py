"""Who may call the management API: active staff users holding the Django model permission.

The permission follows the admin's: ``view`` to read, ``add`` to create, ``change`` to edit (and
for actions such as rotate, revoke or cancel, named by a view's ``action_permissions``),
``delete`` to delete.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission, DjangoModelPermissions

MANAGED_APPS = ("providers_app", "responses_app")


def is_staff(user: Any) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class IsStaff(BasePermission):
    """Active staff with some permission on the managed apps (the API root and the OpenAPI document)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return is_staff(user) and any(user.has_module_perms(app) for app in MANAGED_APPS)


class StaffModelPermissions(DjangoModelPermissions):
    """Staff plus the model permission of the request's method (``view`` for reads, OPTIONS too)."""

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request: Any, view: Any) -> bool:
        if not is_staff(request.user):
            return False
        action = (getattr(view, "action_permissions", None) or {}).get(getattr(view, "action", None))
        if action is None:
            return super().has_permission(request, view)
        opts = self._queryset(view).model._meta
        return request.user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")
