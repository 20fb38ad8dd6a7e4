"""The Slack Web API calls the service makes, and posts to a slash command's `response_url`.

All calls go through one injected `httpx.AsyncClient`; Web API methods go to
`LOOPWRIGHT_SLACK__API_URL` with the bot token in the `Authorization` header. A 429 is retried
after its `Retry-After` (at most `max_retries` times, each wait capped at `max_wait_seconds`).

Errors::

    SlackError                  a call failed: a transport error, an HTTP error, or `ok: false`
     └── SlackRateLimited       still rate limited after the retries
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog

log = structlog.get_logger("app.slack")

Sleep = Callable[[float], Awaitable[None]]


class SlackError(Exception):
    """A Slack call that failed; `error` is Slack's own error code when it gave one."""

    def __init__(self, message: str, *, error: str = "") -> None:
        super().__init__(message)
        self.error = error


class SlackRateLimited(SlackError):
    """Slack answered 429 more often than the client retries."""


class SlackClient:
    """Args:
    http: the connection pool every call goes through.
    api_url: the Web API's base URL (`https://slack.com/api`, or a stand-in).
    token: the bot token; None when there is none (only `respond` can be used then).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_url: str,
        token: str | None,
        max_retries: int = 3,
        max_wait_seconds: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.max_retries = max_retries
        self.max_wait_seconds = max_wait_seconds
        self.sleep = sleep

    @property
    def has_token(self) -> bool:
        return bool(self.token)

    async def post_message(
        self, channel: str, text: str, *, blocks: list[dict[str, Any]], thread_ts: str = ""
    ) -> str:
        """Post a message (in a thread when `thread_ts` is given); returns its `ts`."""
        body: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks}
        if thread_ts:
            body["thread_ts"] = thread_ts
        answer = await self.call("chat.postMessage", body)
        return str(answer.get("ts", ""))

    async def update_message(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]]
    ) -> None:
        await self.call(
            "chat.update", {"channel": channel, "ts": ts, "text": text, "blocks": blocks}
        )

    async def post_ephemeral(
        self, channel: str, user: str, text: str, *, thread_ts: str = ""
    ) -> None:
        body: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if thread_ts:
            body["thread_ts"] = thread_ts
        await self.call("chat.postEphemeral", body)

    async def own_ids(self) -> tuple[str, str]:
        """This app's bot user id and bot id (`auth.test`)."""
        answer = await self.call("auth.test", {})
        return str(answer.get("user_id", "")), str(answer.get("bot_id", ""))

    async def call(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Call a Web API method with a JSON body; returns Slack's answer when `ok`.

        Raises:
            SlackError: no bot token, a transport or HTTP error, or `ok: false`.
        """
        if not self.token:
            raise SlackError(f"{method!r} needs a bot token (LOOPWRIGHT_SLACK__BOT_TOKEN)")
        headers = {"Authorization": f"Bearer {self.token}"}
        response = await self._post(f"{self.api_url}/{method}", body, headers, method)
        try:
            answer = response.json()
        except ValueError as exc:
            raise SlackError(f"{method!r} answered with no JSON") from exc
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            error = str(answer.get("error", "unknown")) if isinstance(answer, dict) else "unknown"
            raise SlackError(f"{method!r} failed: {error}", error=error)
        return answer

    async def respond(self, response_url: str, body: Mapping[str, Any]) -> None:
        """Post to a slash command's `response_url` (no token: the URL is the credential)."""
        await self._post(response_url, body, {}, "response_url")

    async def _post(
        self, url: str, body: Mapping[str, Any], headers: dict[str, str], what: str
    ) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                response = await self.http.post(url, json=dict(body), headers=headers)
            except httpx.HTTPError as exc:
                raise SlackError(f"{what!r} failed: {type(exc).__name__}: {exc}") from exc
            if response.status_code != 429:
                if response.is_error:
                    raise SlackError(f"{what!r} answered HTTP {response.status_code}")
                return response
            if attempt == self.max_retries:
                break
            wait = _retry_after(response, self.max_wait_seconds)
            log.warning("slack_rate_limited", method=what, attempt=attempt + 1, retry_after_s=wait)
            await self.sleep(wait)
        raise SlackRateLimited(
            f"{what!r} still rate limited after {self.max_retries} retries", error="ratelimited"
        )


def _retry_after(response: httpx.Response, cap: float) -> float:
    value = response.headers.get("retry-after", "").strip()
    seconds = float(value) if value.replace(".", "", 1).isdigit() else 1.0
    return min(max(seconds, 0.0), cap)
