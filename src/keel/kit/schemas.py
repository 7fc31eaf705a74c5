"""Building blocks of request schemas whose published JSON Schema says what validation does.

- Text: PostgreSQL `text` cannot hold U+0000, so every text field forbids it (a NUL in a title
  was a 500); as a `pattern` the rule is in the published schema too. A required label:
  `Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), STRIP]`.
- `InputModel`: the base of request bodies. Unknown fields are refused (`id`, `owner_id`,
  `is_admin` sent by a client are a 422, never stored). Values are validated as JSON sends
  them: a date, a UUID, a decimal arrive as text and are parsed; declare booleans and numbers
  `StrictBool` / `StrictInt` / `StrictFloat` so that `"done": 1` or `"count": "5"` is a 422,
  not a guess. The work is bounded by the model, not by the body: past `MAX_ERRORS` unknown
  fields, they are counted, not validated one by one (pydantic makes an error object per
  unknown key, and a 1 MiB body holds ~90,000 of them).
- `PartialUpdate`: a PATCH body. Only the fields sent change, at least one must be sent, and
  fields in `not_null` may be left out but not sent as null.
- `PasswordForm`: the OAuth2 password flow's form (`OAuth2PasswordRequestForm`'s fields), its
  text held to the same NUL rule.

Every text input of the API refuses NUL (a test walks the OpenAPI document for it), except a
password, which is hashed and never reaches PostgreSQL as text.
"""

from __future__ import annotations

import functools
import itertools
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ModelWrapValidatorHandler,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

NO_NUL = r"^[^\x00]*$"
# What `str.strip()` removes, spelled out: `\s` means something else in each engine that reads
# the pattern (pydantic's Rust regex counts U+0085 but not U+001C; JSON Schema's ECMAScript counts
# U+FEFF but not U+0085), so a title of U+0085 passed a fuzzer's idea of the rule and failed
# ours, and one of U+001C passed ours and was stored empty.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# At least one character that `str.strip()` keeps, and no NUL.
NOT_BLANK = rf"^[^\x00]*[^{WHITESPACE}\x00][^\x00]*$"
# Last in the Annotated: the length limits then apply to the text as sent (as the schema says)
# and the stored value has surrounding whitespace removed. pydantic's `strip_whitespace=True`
# strips before checking the length, which accepted more than the schema allows.
STRIP = AfterValidator(str.strip)


def _whole_float_as_int(value: object) -> object:
    """JSON Schema counts 5.0 as an integer, and clients send it; strict int would refuse it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer as JSON Schema defines it (5 or 5.0); text ("5") or a boolean is a 422.
WholeNumber = Annotated[StrictInt, BeforeValidator(_whole_float_as_int)]
# A 422 lists at most this many errors (keel.api.problems), and a body with more unknown fields
# than this is refused without validating each of them.
MAX_ERRORS = 20


class InputModel(BaseModel):
    """Base of request bodies: unknown fields refused (booleans and numbers: the Strict types)."""

    # Not strict=True: FastAPI validates the parsed JSON as Python objects, and strict mode would
    # then refuse a date or a UUID given as text, which is the only way JSON can send one.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="wrap")
    @classmethod
    def _bound_unknown_fields(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Many unknown fields: one summary and the first few, in time that does not grow with
        their number (the keys are counted, not looked at one by one)."""
        if isinstance(data, dict) and len(data) > MAX_ERRORS:
            accepted = _accepted_keys(cls)
            unknown = len(data) - sum(1 for key in accepted if key in data)
            if unknown > MAX_ERRORS:
                raise _too_many_unknown_fields(cls.__name__, data, accepted, unknown)
        return handler(data)


@functools.cache
def _accepted_keys(model: type[BaseModel]) -> frozenset[str]:
    """The keys a body of `model` may hold: field names and their string aliases."""
    keys = set(model.model_fields)
    for field in model.model_fields.values():
        keys.update(a for a in (field.alias, field.validation_alias) if isinstance(a, str))
    return frozenset(keys)


def _too_many_unknown_fields(
    title: str, data: dict[Any, Any], accepted: frozenset[str], unknown: int
) -> ValidationError:
    """`MAX_ERRORS` errors: how many unknown fields were sent, then the first of them, each as
    pydantic reports an unknown field."""
    summary = PydanticCustomError(
        "too_many_unknown_fields",
        "{count} fields are not in the schema; the first {listed} are listed",
        {"count": unknown, "listed": MAX_ERRORS - 1},
    )
    first = itertools.islice((key for key in data if key not in accepted), MAX_ERRORS - 1)
    errors: list[InitErrorDetails] = [{"type": summary, "loc": (), "input": None}]
    errors += [{"type": "extra_forbidden", "loc": (key,), "input": data[key]} for key in first]
    return ValidationError.from_exception_data(title, errors)


class PartialUpdate(InputModel):
    """Base of PATCH bodies. Fields are declared `X | None = None`; `changes()` gives the ones
    sent, which is what the UPDATE sets (a `None` there means NULL)."""

    # Declared `X | None` only so that "left out" can be told apart: null is refused for them.
    not_null: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _check_fields_sent(self) -> Self:
        sent = self.model_fields_set
        if not sent:
            raise ValueError(f"send at least one of: {', '.join(type(self).model_fields)}")
        for name in type(self).model_fields:
            if name in self.not_null and name in sent and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        resolved = handler.resolve_ref_schema(json_schema)
        resolved["minProperties"] = 1
        for name in cls.not_null:
            field = resolved["properties"][name]
            (branch,) = [b for b in field.pop("anyOf") if b.get("type") != "null"]
            field.pop("default", None)
            field.update(branch)
        return json_schema

    def changes(self) -> dict[str, Any]:
        """The fields sent, in declaration order."""
        sent = self.model_fields_set
        return {name: getattr(self, name) for name in type(self).model_fields if name in sent}


class PasswordForm(BaseModel):
    """OAuth2 password flow (RFC 6749 section 4.3.2). No text but the password may hold NUL."""

    # The fields, names and defaults of FastAPI's `OAuth2PasswordRequestForm`; declared
    # `Annotated[PasswordForm, Form()]`. Every text but the password refuses NUL: the username
    # is looked up in PostgreSQL, where a NUL was a 500. Fields a client adds are ignored, as
    # OAuth2 allows.
    grant_type: Annotated[str | None, Field(pattern="^password$")] = None
    username: Annotated[str, Field(pattern=NO_NUL)]
    # Hashed and compared, never stored: any character, as registration accepts.
    password: Annotated[str, Field(json_schema_extra={"format": "password"})]
    scope: Annotated[str, Field(pattern=NO_NUL)] = ""
    client_id: Annotated[str | None, Field(pattern=NO_NUL)] = None
    client_secret: Annotated[
        str | None, Field(pattern=NO_NUL, json_schema_extra={"format": "password"})
    ] = None
