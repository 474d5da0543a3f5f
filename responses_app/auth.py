"""Kept for the dotted paths earlier docs gave host sites: the hook now lives in :mod:`responses_app.gateway.auth`."""

from responses_app.gateway.auth import ClientIdentity, authenticate_default

__all__ = ["ClientIdentity", "authenticate_default"]
