"""Request body cap that counts the bytes really received (chunked bodies included)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prompt_ledger.api.errors import error_response
from prompt_ledger.errors import PayloadTooLarge


class BodyLimitMiddleware:
    """413 ``payload_too_large`` past ``max_bytes``.

    A declared Content-Length over the cap is refused before the body is read; otherwise
    the wrapped ``receive`` counts bytes and raises mid-stream, which FastAPI lets through
    to the HTTPException handler (so the answer keeps the error envelope).
    Starlette's own ``RequestBodyLimitMiddleware`` answers in plain text, hence this one.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> HTTPException:
        return HTTPException(
            PayloadTooLarge.status, f"request body is larger than {self.max_bytes} bytes"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = error_response(
                    PayloadTooLarge.status, PayloadTooLarge.code, self._too_large().detail
                )
                await response(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)
