"""keel.kit.schemas: request bodies as JSON sends them, and PATCH bodies that say what was sent."""

from __future__ import annotations

import re
import sys
import uuid
from datetime import date
from typing import Annotated, Any, ClassVar

import pytest
from pydantic import Field, StrictBool, ValidationError

from keel.kit.schemas import NOT_BLANK, STRIP, InputModel, PartialUpdate

# Everything `str.strip()` removes: what `STRIP` takes off a label before it is stored.
STRIPPED = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()]


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


class Label(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), STRIP]


@pytest.mark.parametrize("blank", STRIPPED, ids=[f"U+{ord(c):04X}" for c in STRIPPED])
def test_a_label_that_strips_to_nothing_is_refused_by_the_validator_and_the_pattern(
    blank: str,
) -> None:
    """The published pattern, read by Python's regex engine (as a client or a fuzzer would), and
    pydantic's validation agree: nothing blank is accepted, so nothing blank is stored."""
    for text in (blank, blank * 3):
        with pytest.raises(ValidationError):
            Label(name=text)
        assert re.search(NOT_BLANK, text) is None
    surrounded = f"{blank}x{blank}"
    assert Label(name=surrounded).name == "x"
    assert re.search(NOT_BLANK, surrounded) is not None


def test_a_character_strip_keeps_makes_a_label_even_if_some_engine_calls_it_space() -> None:
    # U+FEFF is whitespace to ECMAScript's `\s`, not to `str.strip()`: it is kept, so it counts.
    assert Label(name="\ufeff").name == "\ufeff"
    assert re.search(NOT_BLANK, "\ufeff") is not None
