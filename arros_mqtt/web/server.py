"""The console's HTTP server: stdlib `http.server.ThreadingHTTPServer` on `[web] listen`.

Why the standard library: the console serves a handful of pages, JSON calls and a few Server-Sent
Event streams to one or two operators; a thread per connection is plenty, and it adds no dependency
and no event loop to a process that runs on edge servers (its idle cost is one thread and a socket).
Each SSE stream holds a thread, so at most MAX_EVENT_STREAMS are served at once.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import orjson

from arros_mqtt.config import parse_listen
from arros_mqtt.core.errors import ConfigError, UserError
from arros_mqtt.web import data, pages
from arros_mqtt.web.archives import archive_listing, archive_query
from arros_mqtt.web.auth import CSRF_HEADER, SESSION_COOKIE, Guard, Session
from arros_mqtt.web.sampler import Sampler
from arros_mqtt.web.sources import WebSources

log = logging.getLogger(__name__)
MAX_EVENT_STREAMS = 32
EVENT_INTERVAL = 1.0  # seconds between two looks at what a page shows
KEEPALIVE_SECONDS = 15.0
SNAPSHOT_TTL = 0.5  # pages open in several tabs share one snapshot per half second
MAX_BODY_BYTES = 256 * 1024
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".LICENSE": "text/plain",
                ".txt": "text/plain; charset=utf-8", "": "text/plain; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
    # same-origin, not no-referrer: under no-referrer a form POST (the logout button) sends `Origin: null`
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
}


class WebConsole:
    """Started and stopped by `Service`; `url` once started."""

    def __init__(self, sources: WebSources) -> None:
        self.sources = sources
        self.web = sources.config.web
        host, self.requested_port = parse_listen(self.web.address)
        self.host = host
        self.guard = Guard(host, self.web.password)
        self.sampler = Sampler(sources)
        self.stopping = threading.Event()
        self.event_streams = threading.BoundedSemaphore(MAX_EVENT_STREAMS)
        self._snapshots: dict[str, tuple[float, bytes]] = {}
        self._snapshot_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
        return f"http://{host}:{self.port}/"

    def start(self) -> bool:
        """False (with a warning) when the default address is taken; a given one that cannot be bound
        is a ConfigError naming `web.listen`."""
        try:
            self._server = _Server((self.host, self.requested_port), _handler(self))
        except OSError as exc:
            if self.web.listen is None:
                log.warning("web console not started: %s is in use (set [web] listen, or enabled = false)",
                            self.web.address)
                return False
            raise ConfigError(self.sources.config.source, "web.listen",
                              f"cannot listen on {self.web.listen}: {exc.strerror}") from None
        self.sampler.start()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="arros-web", daemon=True)
        self._thread.start()
        log.info("web console on %s", self.url)
        if self.guard.token_generated:
            log.warning("web console login token (printed once): %s, or open %slogin?token=%s", self.guard.secret,
                        self.url, self.guard.secret)
        return True

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.sampler.stop()

    def snapshot(self, key: str) -> bytes:
        """What the page `key` shows, as JSON (KeyError for an unknown stream or subscription)."""
        now = time.monotonic()
        with self._snapshot_lock:
            cached = self._snapshots.get(key)
            if cached is not None and now - cached[0] < SNAPSHOT_TTL:
                return cached[1]
        encoded = orjson.dumps(self.page_data(key), default=str)
        with self._snapshot_lock:
            self._snapshots[key] = (now, encoded)
            if len(self._snapshots) > 256:
                self._snapshots.clear()
        return encoded

    def page_data(self, key: str) -> dict[str, Any]:
        sources, sampler = self.sources, self.sampler
        page, _, name = key.partition("/")
        if page == "overview":
            return data.overview(sources, sampler)
        if page == "streams":
            return data.stream_page(sources, sampler, name) if name else {"streams": data.stream_rows(sources)}
        if page == "subscriptions":
            if not name:
                return {"subscriptions": data.subscription_rows(sources)}
            return data.subscription_page(sources, sampler, name)
        raise KeyError(key)

    def archive_root(self) -> Path:
        return Path(self.sources.config.archive.dir)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


def _handler(console: WebConsole) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.console = console
    return Handler


class _Handler(BaseHTTPRequestHandler):
    console: WebConsole
    server_version = "arros-web"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s " + format, self.address_string(), *args)

    # -- dispatch --

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _guarded(self, route: Any) -> None:
        try:
            if not self.console.guard.host_ok(self.headers.get("Host")):
                self._text(HTTPStatus.MISDIRECTED_REQUEST, "this console answers on a loopback host name only")
                return
            route()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except UserError as exc:  # e.g. a body over MAX_BODY_BYTES
            self._text(HTTPStatus.BAD_REQUEST, str(exc))
        except Exception:  # our bug: a 500, the service goes on
            log.exception("web console: %s %s failed", self.command, self.path)
            with contextlib.suppress(OSError):
                self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the service's log")

    def _get(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
            return
        if path == "/login":
            token = query.get("token", [None])[0]
            if token is not None:
                self._login(token, query.get("next", ["/"])[0])
            else:
                body = pages.login_body(None, self.console.guard.token_generated, query.get("next", ["/"])[0])
                self._page(HTTPStatus.OK, "Log in", body, self._session_or_new())
            return
        session = self._session()
        if not self.console.guard.allowed(session):
            if path.startswith(("/events/", "/api/")):
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "log in first"})
            else:
                self._redirect(f"/login?next={quote(path)}")
            return
        if session is None:  # an open console: every browser gets a session (for its CSRF token)
            session = self.console.guard.new_session(logged_in=False)
            self._new_cookie = session
        if path.startswith("/events/"):
            self._events(path.removeprefix("/events/").strip("/"))
        elif path.startswith("/api/data/"):
            self._api_data(path.removeprefix("/api/data/").strip("/"))
        else:
            self._render(path, query, session)

    def _post(self) -> None:
        path = urlsplit(self.path).path
        if path == "/login":
            form = parse_qs(self._body().decode("utf-8", "replace"))
            self._login(form.get("password", [""])[0], form.get("next", ["/"])[0])
            return
        session = self._session()
        if not self.console.guard.allowed(session):
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "log in first"})
            return
        if not self._same_origin() or not self.console.guard.csrf_ok(session, self._csrf_token()):
            self._json(HTTPStatus.FORBIDDEN, {"error": f"refused: missing or wrong {CSRF_HEADER} (CSRF protection)"})
            return
        if path == "/api/control":
            self._control()
        elif path == "/api/query":
            self._query()
        elif path == "/logout":
            self.console.guard.end(session.id if session else None)
            self._redirect("/login")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "unknown path"})

    # -- pages --

    def _render(self, path: str, query: dict[str, list[str]], session: Session) -> None:
        console = self.console
        parts = [p for p in path.split("/") if p]
        try:
            if not parts:
                body = pages.overview_body(console.page_data("overview"))
                self._page(HTTPStatus.OK, "Overview", body, session, "/events/overview", "/")
            elif parts == ["streams"]:
                self._page(HTTPStatus.OK, "Streams", pages.streams_body(console.page_data("streams")), session,
                           "/events/streams", "/streams")
            elif parts == ["subscriptions"]:
                body = pages.subscriptions_body(console.page_data("subscriptions"))
                self._page(HTTPStatus.OK, "Subscriptions", body, session, "/events/subscriptions", "/subscriptions")
            elif len(parts) == 2 and parts[0] == "streams":
                body = pages.stream_body(console.page_data(f"streams/{parts[1]}"))
                self._page(HTTPStatus.OK, f"Stream {parts[1]}", body, session, f"/events/streams/{parts[1]}",
                           "/streams")
            elif len(parts) == 2 and parts[0] == "subscriptions":
                body = pages.subscription_body(console.page_data(f"subscriptions/{parts[1]}"))
                self._page(HTTPStatus.OK, f"Subscription {parts[1]}", body, session,
                           f"/events/subscriptions/{parts[1]}", "/subscriptions")
            elif parts == ["editor"]:
                self._page(HTTPStatus.OK, "SQL editor", self._editor(query.get("name", [""])[0]), session,
                           None, "/editor")
            elif parts == ["archives"]:
                body = pages.archives_body(archive_listing(console.archive_root()))
                self._page(HTTPStatus.OK, "Archives", body, session, None, "/archives")
            else:
                raise KeyError(path)
        except KeyError:
            self._page(HTTPStatus.NOT_FOUND, "Not found", f"<p>Nothing at {pages.escape(path)}.</p>", session)

    def _editor(self, name: str) -> str:
        subscription = self.console.sources.engine.subscriptions.get(name)
        sql = subscription.config.sql.strip() if subscription else ""
        output = subscription.config.output.text if subscription and subscription.config.output else ""
        return pages.editor_body(name, sql, output, self.console.sources.control is not None)

    # -- live data and calls --

    def _events(self, key: str) -> None:
        console = self.console
        try:
            first = console.snapshot(key or "overview")
        except KeyError:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"nothing at {key}"})
            return
        if not console.event_streams.acquire(blocking=False):
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"{MAX_EVENT_STREAMS} live pages are open"})
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self._common_headers()
            self.end_headers()
            self._stream(key or "overview", first)
        finally:
            console.event_streams.release()

    def _stream(self, key: str, payload: bytes) -> None:
        console, last, quiet_since = self.console, b"", time.monotonic()
        while not console.stopping.is_set():
            if payload != last:
                self.wfile.write(b"data: " + payload + b"\n\n")
                self.wfile.flush()
                last, quiet_since = payload, time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                quiet_since = time.monotonic()
            if console.stopping.wait(EVENT_INTERVAL):
                return
            try:
                payload = console.snapshot(key)
            except KeyError:  # the subscription was dropped
                self.wfile.write(b'event: gone\ndata: {}\n\n')
                self.wfile.flush()
                return

    def _api_data(self, key: str) -> None:
        try:
            self._send(HTTPStatus.OK, "application/json", self.console.snapshot(key or "overview"))
        except KeyError:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"nothing at {key}"})

    def _control(self) -> None:
        control = self.console.sources.control
        if control is None:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"ok": False, "error": {
                "code": "internal_error", "message": "this service has no control plane"}})
            return
        self._send(HTTPStatus.OK, "application/json", control(self._body()))

    def _query(self) -> None:
        try:
            request = orjson.loads(self._body())
            sql = request["sql"] if isinstance(request, dict) else None
        except (orjson.JSONDecodeError, KeyError):
            sql = None
        if not isinstance(sql, str) or not sql.strip():
            self._json(HTTPStatus.BAD_REQUEST, {"error": 'expected {"sql": "SELECT ..."}'})
            return
        try:
            result = archive_query(self.console.archive_root(), sql)
        except UserError as exc:
            self._json(HTTPStatus.OK, {"error": str(exc)})
            return
        self._send(HTTPStatus.OK, "application/json", orjson.dumps(result, default=str))

    # -- login --

    def _login(self, secret: str, next_path: str) -> None:
        guard = self.console.guard
        if not guard.check_secret(secret):
            time.sleep(0.5)  # slows down guessing; the token has 144 bits anyway
            body = pages.login_body("wrong password or token", guard.token_generated, next_path)
            self._page(HTTPStatus.UNAUTHORIZED, "Log in", body, self._session_or_new())
            return
        self._new_cookie = guard.new_session(logged_in=True)
        self._redirect(next_path if next_path.startswith("/") and not next_path.startswith("//") else "/")

    def _session(self) -> Session | None:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:  # a malformed Cookie header counts as none
            return None
        morsel = cookie.get(SESSION_COOKIE)
        return self.console.guard.session(morsel.value if morsel else None)

    def _session_or_new(self) -> Session:
        session = self._session()
        if session is None:
            session = self._new_cookie = self.console.guard.new_session(logged_in=False)
        return session

    def _csrf_token(self) -> str | None:
        """From the header (the pages' script), else from a plain form's `csrf` field (the logout button)."""
        token = self.headers.get(CSRF_HEADER)
        if token is None and self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            token = parse_qs(self._body().decode("utf-8", "replace")).get("csrf", [None])[0]
        return token

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc == self.headers.get("Host")

    # -- responses --

    _new_cookie: Session | None = None

    def _page(self, status: HTTPStatus, title: str, body: str, session: Session, events: str | None = None,
              current: str = "") -> None:
        logout = self.console.guard.login_required and session.logged_in
        html = pages.layout(title, body, session.csrf, events, current, logout)
        self._send(status, "text/html; charset=utf-8", html.encode())

    def _static(self, name: str) -> None:
        folder = files("arros_mqtt.web").joinpath("static")
        if "/" in name or name.startswith(".") or not folder.joinpath(name).is_file():
            self._text(HTTPStatus.NOT_FOUND, "no such file")
            return
        suffix = name[name.rfind("."):] if "." in name else ""
        self._send(HTTPStatus.OK, STATIC_TYPES.get(suffix, "application/octet-stream"),
                   folder.joinpath(name).read_bytes(), cache=True)

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self._common_headers()
        self.end_headers()

    def _json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, "application/json", orjson.dumps(value))

    def _text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode())

    def _send(self, status: HTTPStatus, content_type: str, body: bytes, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self._common_headers()
        self.end_headers()
        self.wfile.write(body)

    def _common_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if self._new_cookie is not None:
            self.send_header("Set-Cookie", f"{SESSION_COOKIE}={self._new_cookie.id}; Path=/; HttpOnly; "
                             "SameSite=Strict")
            self._new_cookie = None

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            raise UserError(f"request body over {MAX_BODY_BYTES} bytes")
        return self.rfile.read(max(0, length))
