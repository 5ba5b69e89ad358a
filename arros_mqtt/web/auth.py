"""Who may use the console, and that a state-changing request comes from its own pages.

On a loopback address the console is open (anyone who can reach it can already reach the broker and
the state directory), unless a password is configured. Beyond loopback a login is required: the
configured password, or a token generated at start and printed in the log. A login sets an HttpOnly,
SameSite=Strict session cookie. Every session, logged in or open, has a CSRF token that the pages send
back in a header with each POST; a POST without the session's token, or from another Origin, is refused.
On loopback the Host header must name a loopback address too, so a DNS-rebinding page cannot read it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

SESSION_COOKIE = "arros_session"
CSRF_HEADER = "X-CSRF-Token"
MAX_SESSIONS = 1000  # the oldest is forgotten past this (its browser logs in again)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    logged_in: bool


class Guard:
    """Sessions in memory (a restart logs everyone out), at most MAX_SESSIONS."""

    def __init__(self, host: str, password: str | None) -> None:
        self.loopback = is_loopback(host)
        self.login_required = password is not None or not self.loopback
        self.token_generated = password is None and self.login_required
        self.secret = password if password is not None else secrets.token_urlsafe(18)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def check_secret(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.secret.encode())

    def session(self, session_id: str | None) -> Session | None:
        if session_id is None:
            return None
        with self._lock:
            return self._sessions.get(session_id)

    def new_session(self, logged_in: bool) -> Session:
        session = Session(secrets.token_urlsafe(24), secrets.token_urlsafe(24), logged_in)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def allowed(self, session: Session | None) -> bool:
        """May this session read pages and call the API?"""
        return not self.login_required or (session is not None and session.logged_in)

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        return session is not None and token is not None and hmac.compare_digest(token.encode(),
                                                                                 session.csrf.encode())

    def host_ok(self, host_header: str | None) -> bool:
        """On loopback, the Host the browser asked for must be a loopback name (DNS rebinding)."""
        if not self.loopback:
            return True
        if not host_header:
            return False
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return is_loopback(host.strip("[]"))
