"""The baseline of bench/edge.py: bare FastAPI serving the same /livez as Keel, nothing else."""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


def create_app() -> FastAPI:
    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})

    @app.get("/livez")
    async def livez() -> Liveness:
        return Liveness()

    return app
