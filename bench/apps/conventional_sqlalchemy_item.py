"""Reference: the same authenticated item GET written the conventional way.

FastAPI with an SQLAlchemy ORM `AsyncSession` dependency (engine with `pool_pre_ping`), a
`get_current_user` dependency that decodes the JWT and loads the user row on every request
(that is how such apps make deactivation take effect), then `session.get(Item, id)` and an
ownership check. The pool is sized like Keel's so only the code path differs.
DATABASE_URL, JWT_SECRET, BENCH_POOL_SIZE come from the environment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import jwt
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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
    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    title: Mapped[str]
    description: Mapped[str | None]
    done: Mapped[bool]
    version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


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
app = FastAPI()


@app.get("/items/{item_id}", response_model=ItemRead)
async def read_item(item_id: uuid.UUID, session: SessionDep, user: CurrentUser) -> Item:
    item = await session.get(Item, item_id)
    if item is None or (item.owner_id != user.id and not user.is_admin):
        raise HTTPException(status_code=404, detail="Item not found")
    return item
