"""Basic auth exchanged for a bearer token, the way Flight SQL clients (ADBC, JDBC) log in.

The client sends `authorization: Basic base64(user:password)` (on Handshake, or on any call); the reply
carries `authorization: Bearer TOKEN`, which the client sends on every later call. Tokens live in
memory until the service stops; the oldest are dropped past MAX_TOKENS.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
from collections import OrderedDict

import pyarrow.flight as flight

MAX_TOKENS = 10_000


class NoHandshakeCheck(flight.ServerAuthHandler):
    """Handshake succeeds as such: the middleware below has checked its headers already."""

    def authenticate(self, outgoing: flight.ServerAuthSender, incoming: flight.ServerAuthReader) -> None:
        return None

    def is_valid(self, token: bytes) -> str:
        return ""


class BearerTokens(flight.ServerMiddlewareFactory):
    """Every call needs valid credentials or a token handed out for them."""

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self._username, self._password = username.encode(), password.encode()
        self._tokens: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> flight.ServerMiddleware:
        value = next(iter(headers.get("authorization", [])), "")
        scheme, _, credential = value.partition(" ")
        if scheme.lower() == "bearer" and self._known(credential.strip()):
            return _Reply(None)
        if scheme.lower() == "basic" and self._valid(credential.strip()):
            return _Reply(self._new_token())
        raise flight.FlightUnauthenticatedError("credentials required: a valid username and password"
                                                if not value else "invalid username, password or token")

    def _valid(self, credential: str) -> bool:
        try:
            # arrow-go (ADBC) sends the base64 unpadded
            user, _, password = base64.b64decode(credential + "=" * (-len(credential) % 4), validate=True) \
                .partition(b":")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(user, self._username) & hmac.compare_digest(password, self._password)

    def _known(self, token: str) -> bool:
        with self._lock:
            return token in self._tokens

    def _new_token(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = None
            while len(self._tokens) > MAX_TOKENS:
                self._tokens.popitem(last=False)
        return token


class _Reply(flight.ServerMiddleware):
    def __init__(self, token: str | None) -> None:
        super().__init__()
        self._token = token

    def sending_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._token}"} if self._token else {}
