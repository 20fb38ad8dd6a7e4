"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from app.ledger import LedgerError


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str


def ops_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=Health, summary="The process is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get(
        "/readyz",
        response_model=Readiness,
        summary="The database answers",
        responses={503: {"model": Readiness}},
    )
    def readyz(request: Request) -> Response:
        ledger = request.app.state.services.ledger
        try:
            with ledger.transaction(write=False) as conn:
                conn.execute(sa.text("SELECT 1"))
        except LedgerError as exc:
            body = Readiness(status="unavailable", database=str(exc)[:200])
            return JSONResponse(body.model_dump(), status_code=503)
        return JSONResponse(Readiness(status="ok", database="ok").model_dump())

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    def metrics(request: Request) -> Response:
        body = request.app.state.services.metrics.render()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
