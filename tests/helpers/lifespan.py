"""Drive an ASGI app's real lifespan, the way uvicorn does, and hand its state to each request.

httpx's ASGITransport sends no lifespan events and no `state`, so the app's typed lifespan state
would never reach the requests without this.
"""

from __future__ import annotations

import asyncio
import dataclasses
from types import TracebackType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STARTUP_TIMEOUT = 30.0


class LifespanManager:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.state: dict[str, Any] = {}
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LifespanManager:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self._task = asyncio.create_task(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._next_message()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"lifespan startup failed: {message.get('message', message)}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        message = await self._next_message()
        assert self._task is not None
        await asyncio.wait_for(self._task, STARTUP_TIMEOUT)
        if message["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"lifespan shutdown failed: {message.get('message', message)}")

    async def _run(self, scope: Scope) -> None:
        await self._app(scope, self._to_app.get, self._from_app.put)

    async def _next_message(self) -> Message:
        assert self._task is not None
        getter = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait(
            {getter, self._task}, timeout=STARTUP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._task in done:
            self._task.result()  # re-raises the app's own error
            raise RuntimeError("the app's lifespan ended without answering")
        raise TimeoutError("lifespan did not answer in time")

    def use_database(self, database: Any) -> None:
        """From now on every request (Db, ReadDb, CurrentUser) uses `database`: the tests' seam
        for binding the app to their rolled-back transaction. The lifespan still owns, and
        closes, the real pool."""
        self.state["resources"] = dataclasses.replace(self.state["resources"], db=database)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, with the lifespan state copied into each request scope as servers do."""
        await self._app({**scope, "state": dict(self.state)}, receive, send)
