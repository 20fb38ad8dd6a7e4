"""The intake benchmarks' baseline: a FastAPI app whose `POST /api/jobs` and
`POST /webhooks/github` answer 202 (`POST /webhooks/slack/commands` 200) and do nothing else
(the body is not read), served the way
`loopwright serve` serves the real one (uvicorn, one worker, the stdlib event loop, the same
HTTP parser, no access log): `python -m tests.benchmarks.bare_service PORT [LOOP]`, where LOOP
is `asyncio` (the default, as served) or `uvloop` (for comparison).
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/api/jobs", status_code=202)
    async def submit_job() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/webhooks/github", status_code=202)
    async def receive_github_webhook() -> dict[str, bool]:
        return {"accepted": True}

    @app.post("/webhooks/slack/commands")
    async def receive_slack_command() -> dict[str, str]:
        return {"response_type": "ephemeral", "text": "ok"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(port: int, loop: str = "asyncio") -> None:
    uvicorn.run(
        bare_app(), host="127.0.0.1", port=port, loop=loop, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), *sys.argv[2:3])
