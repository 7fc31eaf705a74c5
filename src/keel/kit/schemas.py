"""Building blocks of request schemas whose published JSON Schema says what validation does.

- Text: PostgreSQL `text` cannot hold U+0000, so every text field forbids it (a NUL in a title
  was a 500); as a `pattern` the rule is in the published schema too. A required label:
  `Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), STRIP]`.
- `InputModel`: the base of request bodies. Unknown fields are refused (`id`, `owner_id`,
  `is_admin` sent by a client are a 422, never stored). Values are validated as JSON sends
  them: a date, a UUID, a decimal arrive as text and are parsed; declare booleans and numbers
  `StrictBool` / `StrictInt` / `StrictFloat` so that `"done": 1` or `"count": "5"` is a 422,
  not a guess.
- `PartialUpdate`: a PATCH body. Only the fields sent change, at least one must be sent, and
  fields in `not_null` may be left out but not sent as null.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

NO_NUL = r"^[^\x00]*$"
# At least one character that is not whitespace, and no NUL.
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"
# Last in the Annotated: the length limits then apply to the text as sent (as the schema says)
# and the stored value has surrounding whitespace removed. pydantic's `strip_whitespace=True`
# strips before checking the length, which accepted more than the schema allows.
STRIP = AfterValidator(str.strip)


class InputModel(BaseModel):
    """Base of request bodies: unknown fields refused (booleans and numbers: the Strict types)."""

    # Not strict=True: FastAPI validates the parsed JSON as Python objects, and strict mode would
    # then refuse a date or a UUID given as text, which is the only way JSON can send one.
    model_config = ConfigDict(extra="forbid")


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
