"""keel.kit.schemas: request bodies as JSON sends them, and PATCH bodies that say what was sent."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, ClassVar

import pytest
from pydantic import StrictBool, ValidationError

from keel.kit.schemas import InputModel, PartialUpdate


class Booking(InputModel):
    room: uuid.UUID
    day: date
    paid: StrictBool = False


class BookingUpdate(PartialUpdate):
    not_null: ClassVar[frozenset[str]] = frozenset({"day"})

    day: date | None = None
    note: str | None = None


def test_json_text_becomes_the_declared_types() -> None:
    """FastAPI validates the parsed JSON: a date and a UUID arrive as text."""
    room = uuid.uuid4()
    booking = Booking.model_validate({"room": str(room), "day": "2026-12-24"})
    assert (booking.room, booking.day) == (room, date(2026, 12, 24))


@pytest.mark.parametrize(
    "body",
    [
        {"room": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "day": "2026-12-24", "paid": 1},
        {"room": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "day": "2026-12-24", "paid": "true"},
        {"room": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "day": "2026-12-24", "owner": "x"},
        {"room": "not a uuid", "day": "2026-12-24"},
    ],
)
def test_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Booking.model_validate(body)


def test_a_partial_update_knows_what_was_sent() -> None:
    update = BookingUpdate.model_validate({"note": None})
    assert update.changes() == {"note": None}  # null sets NULL
    with pytest.raises(ValidationError, match="send at least one of: day, note"):
        BookingUpdate.model_validate({})
    with pytest.raises(ValidationError, match="day cannot be null"):
        BookingUpdate.model_validate({"day": None})
    schema = BookingUpdate.model_json_schema()
    assert schema["minProperties"] == 1
    assert schema["properties"]["day"] == {"format": "date", "title": "Day", "type": "string"}
