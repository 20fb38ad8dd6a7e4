"""What the webhook routes (GitHub, Slack) share: a refusal with its status, and reading a raw
body under a size limit before anything parses it (the API's guard reads its bodies so too)."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request


class Refused(Exception):
    """A webhook request the route answers with `status` and `reason` (and logs)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body; `Refused` (413) past `limit` bytes, whatever it declared (a chunked body
    declares nothing), before the rest is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body of {int(declared)} bytes is over {limit} bytes")
    # Read from `receive` itself rather than through `request.stream()`: every caller reads the
    # body once, and the generator cost more than the rest of reading a webhook's body.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
