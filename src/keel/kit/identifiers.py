"""PostgreSQL identifiers in SQL text: quoted only where PostgreSQL needs it.

A lower-case name that is not a keyword reads the same quoted or not, so it stays plain
(`title`); anything else is quoted (`"order"`, `"userId"`), matching the names SQLAlchemy gives
the schema it creates. Kept free of SQLAlchemy on purpose: the API process never imports it
(the schema is SQLAlchemy's, for Alembic; the request path is asyncpg).
"""

from __future__ import annotations

import re

# The keywords PostgreSQL does not accept as a bare column name: `pg_get_keywords()` categories
# R (reserved), T (reserved, can be a function or type name) and C (non-reserved, cannot be a
# function or type name), of PostgreSQL 15 to 17: a word a newer release adds is quoted, one it
# drops stays quoted, which is harmless. tests/kit/test_identifiers.py checks the running server.
KEYWORDS = frozenset(
    """
    all analyse analyze and any array as asc asymmetric authorization between bigint binary
    bit boolean both case cast char character check coalesce collate collation column
    concurrently constraint create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user dec decimal default
    deferrable desc distinct do else end except exists extract false fetch float for foreign
    freeze from full grant greatest group grouping having ilike in initially inner inout int
    integer intersect interval into is isnull join json json_array json_arrayagg json_exists
    json_object json_objectagg json_query json_scalar json_serialize json_table json_value
    lateral leading least left like limit localtime localtimestamp merge_action national
    natural nchar none normalize not notnull null nullif numeric offset on only or order out
    outer overlaps overlay placing position precision primary real references returning
    right row select session_user setof similar smallint some substring symmetric
    system_user table tablesample then time timestamp to trailing treat trim true union
    unique user using values varchar variadic verbose when where window with xmlattributes
    xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot
    xmlserialize xmltable
    """.split()  # noqa: SIM905 (one block of words reads better than 140 quoted strings)
)
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


def quote_identifier(name: str) -> str:
    if _PLAIN.fullmatch(name) and name not in KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'
