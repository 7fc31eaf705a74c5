"""What every domain calls instead of writing again; nothing here knows any domain.

- `routing`: routers included as one flat route table, each route's dependencies solved by a
  plan compiled once (`dependency_plan`), so plain FastAPI endpoints stay fast.
- `table`: SELECT column lists, INSERT ... RETURNING and partial UPDATEs derived from one row
  dataclass, run on asyncpg.
- `pagination`: `limit`/`cursor` declared once, signed keyset cursors, `Page`.
- `conditional`: ETag / Last-Modified, 304 and 412 for versioned resources.
- `events`: domain events recorded in the writer's transaction, delivered to subscribers.
- `schemas`: request-body bases (`InputModel`, `PartialUpdate` for PATCH bodies that say which
  fields were sent) and the usual string constraints.
"""
