"""Reference: the same authenticated item endpoints written the conventional way.

FastAPI with an SQLAlchemy ORM `AsyncSession` dependency (engine with `pool_pre_ping`), a
`get_current_user` dependency that decodes the JWT and loads the user row on every request
(that is how such apps make deactivation take effect), and three `BaseHTTPMiddleware` layers
for request id, timing and cache headers, as most templates write them. GET /items/{id} is
`session.get` plus an ownership check; GET /items?limit=N a `select()` of the caller's newest
items; POST /items `session.add` + `commit`. The pool is sized like Keel's so only the code
path differs. BaseHTTPMiddleware appears here, under bench/apps, only because it is what Keel
is compared against. DATABASE_URL, JWT_SECRET, BENCH_POOL_SIZE come from the environment.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated

import jwt
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.middleware.base import BaseHTTPMiddleware

SIZE = int(os.environ.get("BENCH_POOL_SIZE", "32"))
engine = create_async_engine(
    os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1),
    pool_pre_ping=True,
    pool_size=SIZE,
    max_overflow=0,
)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
oauth2 = OAuth2PasswordBearer(tokenUrl="/token")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    email: Mapped[str]
    is_active: Mapped[bool]
    is_admin: Mapped[bool]


class Item(Base):
    __tablename__ = "items"
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    title: Mapped[str]
    description: Mapped[str | None]
    done: Mapped[bool]
    version: Mapped[int] = mapped_column(server_default=sa.FetchedValue())
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.FetchedValue()
    )
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.FetchedValue()
    )
    __mapper_args__ = {"eager_defaults": True}


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    description: str | None
    done: bool
    version: int
    created_at: datetime
    updated_at: datetime


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    description: str | None = None
    done: bool = False


class ItemPage(BaseModel):
    items: list[ItemRead]
    next_cursor: str | None = None


async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_current_user(session: SessionDep, token: Annotated[str, Depends(oauth2)]) -> User:
    try:
        payload = jwt.decode(
            token,
            os.environ["JWT_SECRET"],
            algorithms=["HS256"],
            audience=os.environ.get("JWT_AUDIENCE", "keel-api"),
            issuer=os.environ.get("JWT_ISSUER", "keel"),
        )
    except jwt.InvalidTokenError as error:
        raise HTTPException(status_code=401, detail="Could not validate credentials") from error
    user = await session.get(User, uuid.UUID(payload["sub"]))
    if user is None or not user.is_active:
        raise HTTPException(status_code=401, detail="Inactive user")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
CallNext = Callable[[Request], Awaitable[Response]]


async def request_id(request: Request, call_next: CallNext) -> Response:
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex
    response = await call_next(request)
    response.headers["x-request-id"] = rid
    return response


async def timing(request: Request, call_next: CallNext) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["server-timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


async def cache_headers(request: Request, call_next: CallNext) -> Response:
    response = await call_next(request)
    response.headers.setdefault("cache-control", "no-store")
    return response


app = FastAPI()
app.add_middleware(BaseHTTPMiddleware, dispatch=cache_headers)
app.add_middleware(BaseHTTPMiddleware, dispatch=timing)
app.add_middleware(BaseHTTPMiddleware, dispatch=request_id)


@app.get("/items/{item_id}", response_model=ItemRead)
async def read_item(item_id: uuid.UUID, session: SessionDep, user: CurrentUser) -> Item:
    item = await session.get(Item, item_id)
    if item is None or (item.owner_id != user.id and not user.is_admin):
        raise HTTPException(status_code=404, detail="Item not found")
    return item


@app.get("/items", response_model=ItemPage)
async def list_items(
    session: SessionDep, user: CurrentUser, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> ItemPage:
    rows = await session.scalars(
        sa.select(Item)
        .where(Item.owner_id == user.id)
        .order_by(Item.created_at.desc(), Item.id.desc())
        .limit(limit)
    )
    return ItemPage(items=[ItemRead.model_validate(row) for row in rows])


@app.post("/items", response_model=ItemRead, status_code=201)
async def create_item(data: ItemCreate, session: SessionDep, user: CurrentUser) -> Item:
    item = Item(owner_id=user.id, title=data.title, description=data.description, done=data.done)
    session.add(item)
    await session.commit()
    return item
