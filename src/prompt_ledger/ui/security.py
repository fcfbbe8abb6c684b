"""The UI's session cookie, CSRF tokens and response headers (SPEC §11).

The session is a signed (itsdangerous), HttpOnly, SameSite=Strict cookie. It never holds the
API key: it holds an HMAC of the accepted key's digest (so a cookie signed before a key was
removed from ``API_KEY`` stops working at the next restart) and the CSRF token every
state-changing form echoes back. itsdangerous signs but does not encrypt, hence nothing in
the cookie is secret except its signature.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "pl_session"
PREFIX = "/ui"
STATIC_PREFIX = "/ui/static/"

# No inline script or style, nothing from another host, no framing, forms post here only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


@dataclass(frozen=True, slots=True)
class UISession:
    csrf: str
    key_id: str | None = None  # set once signed in


class SessionCodec:
    """Signs and reads session cookies; the secret comes from settings or is per process."""

    def __init__(self, secret: bytes, *, max_age_s: int) -> None:
        self._secret = secret
        self.max_age_s = max_age_s
        self._serializer = URLSafeTimedSerializer(secret, salt="promptledger.ui.session")

    def key_id(self, key_digest: bytes) -> str:
        """Names an accepted key without revealing it (keyed: no offline guessing)."""
        return hmac.new(self._secret, key_digest, hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def new(key_id: str | None = None) -> UISession:
        return UISession(csrf=secrets.token_urlsafe(32), key_id=key_id)

    def dumps(self, session: UISession) -> str:
        return self._serializer.dumps({"csrf": session.csrf, "kid": session.key_id})

    def loads(self, cookie: str | None) -> UISession | None:
        """The session, or None if absent, forged, expired or malformed."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # SignatureExpired is a BadSignature too
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        kid = data.get("kid")
        return UISession(csrf=data["csrf"], key_id=kid if isinstance(kid, str) else None)


def csrf_matches(session: UISession | None, offered: object) -> bool:
    if session is None or not isinstance(offered, str) or not offered:
        return False
    return hmac.compare_digest(session.csrf.encode(), offered.encode())


def is_ui_path(path: str) -> bool:
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


class UIHeadersMiddleware:
    """Adds the CSP (and friends) to every UI response, errors and static files included.

    Pages are ``no-store`` (they show ledger data; the back button after sign-out must not
    bring them back); the vendored static files may be cached. API responses are untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_ui_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {h for h, _ in _HEADERS}
                ]
                headers += _HEADERS
                if not static:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
