"""Request bodies are refused by size before the app reads them: a declared Content-Length over
the limit is answered 413 at once, and a body sent without one (chunked) is cut off as soon as it
passes the limit, so nobody can make a form or webhook handler buffer megabytes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Pure ASGI middleware with a limit per path prefix (the first that matches) and a default."""

    def __init__(
        self, app: ASGIApp, *, limits: Sequence[tuple[str, int]], default: int, too_large: Callable[[Request], Response]
    ) -> None:
        self.app = app
        self.limits = limits
        self.default = default
        self.too_large = too_large

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self.too_large(Request(scope))(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the handler's read: the app's own 413 page answers, nothing was changed.
                    raise HTTPException(413)
            return message

        await self.app(scope, counted, send)
