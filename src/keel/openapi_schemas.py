"""JSON Schema adjustments so the published schema says exactly what the validators accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import AfterValidator

JsonSchema = dict[str, Any]


def partial_update(*not_null: str, example: JsonSchema) -> Callable[[JsonSchema], None]:
    """`json_schema_extra` for a PATCH body: at least one field (`minProperties: 1`), and the
    fields in `not_null` may be left out but not sent as null (pydantic types them `X | None`
    only so that "left out" can be told apart; the model validator refuses null for them)."""

    def adjust(schema: JsonSchema) -> None:
        schema["minProperties"] = 1
        schema["examples"] = [example]
        for name in not_null:
            field = schema["properties"][name]
            branches = [b for b in field.pop("anyOf") if b.get("type") != "null"]
            (branch,) = branches
            field.pop("default", None)
            field.update(branch)

    return adjust


# PostgreSQL `text` cannot hold U+0000: without this a NUL in a title was a 500 (found by
# schemathesis). As a `pattern` the rule is in the published schema too.
NO_NUL = r"^[^\x00]*$"
# At least one character that is not whitespace, and no NUL.
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"
# For required labels: `Annotated[str, Field(min_length=1, max_length=N, pattern=NOT_BLANK),
# STRIP]`. The length limits apply to the text as sent (as the schema says) and the stored value
# has surrounding whitespace removed. `strip_whitespace=True` strips before the length check,
# which accepted 200+ characters the schema refuses (found by schemathesis).
STRIP = AfterValidator(str.strip)
