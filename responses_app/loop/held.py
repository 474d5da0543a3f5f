"""The response as a running loop holds it for its life: the stored row's values, in slots.

A loop reads a few of its response's fields all along (its id, model, provider, whether it
streams) and needs the whole model only to finish it. A ``Response`` model instance has 32
attributes — its 30 fields, Django's ``_state`` and django-fsm's record of its initial state —
more than the 29 keys CPython lets the instances of a class share in one key table, so each
instance has a dict of its own (1,584 bytes): beside the values themselves, 1,947 bytes per
instance against 289 for the same values in slots (tracemalloc; tests/loop/test_held_response.py
holds the ratio). At a thousand open loops per worker process that is 1.6 MB.
"""

from __future__ import annotations

from responses_app.models import Response

#: The attribute names of the model's columns, in the model's order (``from_db`` takes them so).
FIELD_NAMES: tuple[str, ...] = tuple(field.attname for field in Response._meta.concrete_fields)


class HeldResponse:
    """A response's stored values: read and set as on the model; :meth:`instance` makes the
    model again, as loaded from the database with these values (the state machine's initial
    state is the status held, as for the row it was read from)."""

    __slots__ = (*FIELD_NAMES, "db")

    @classmethod
    def of(cls, response: Response | HeldResponse) -> HeldResponse:
        if isinstance(response, HeldResponse):
            return response
        held = cls.__new__(cls)
        for name in FIELD_NAMES:
            setattr(held, name, getattr(response, name))
        held.db = response._state.db or "default"
        return held

    def instance(self) -> Response:
        return Response.from_db(self.db, list(FIELD_NAMES), [getattr(self, name) for name in FIELD_NAMES])

    def __repr__(self) -> str:
        return f"<HeldResponse {self.id} {self.status}>"
