"""The HTTP side of `nmt serve`: connections, request bodies, routing to a `ModelServer`.

A thread per connection (HTTP/1.1 keep-alive); `stop_http_server` stops accepting, lets the
requests in flight finish and closes idle connections. What a path means is `api.route`'s
business, what a request does is `ModelServer`'s; this module reads bodies (with a size
limit) and writes responses.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from nmt.errors import NmtError
from nmt.serving import api, page
from nmt.serving.api import ServingError
from nmt.serving.options import DEFAULT_HOST, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PORT
from nmt.serving.server import ModelServer

DEFAULT_REQUEST_TIMEOUT = 60.0  # seconds
CLIENT_GONE = (BrokenPipeError, ConnectionResetError)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nmt-serve"
    server: _HTTPServer

    # --- connection tracking for a graceful shutdown

    def setup(self) -> None:
        # seconds a connection may sit idle or stall mid-request (StreamRequestHandler.setup
        # applies it to the socket)
        self.timeout = self.server.request_timeout
        super().setup()
        self.busy = False
        self.server.track(self, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self, False)

    def parse_request(self) -> bool:
        self.busy = True
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self.busy = False
            if self.server.stopping:
                self.close_connection = True

    # --- responses

    def _send_json(self, status: int, value: Any) -> None:
        body = (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")
        self._send(status, body, "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.server.app.count(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection or self.server.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def log_message(self, format: str, *args) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"nmt serve: {self.address_string()} {format % args}\n")

    # --- routing

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:  # the answer of GET without its body (`_send`)
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        try:
            try:
                body = self._read_body()  # whatever the method, to keep the stream in step
                route = "GET" if method == "HEAD" else method
                self._route(route, urlsplit(self.path).path, body)
            except CLIENT_GONE:
                raise
            except ServingError as e:
                self._error(e.status, e.message)
            except Exception as e:  # a bug: answer 500, keep serving
                self.log_error("internal error: %r", e)
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"Internal error: {e}")
        except CLIENT_GONE:  # the client went away (even while told why): nothing to send
            self.close_connection = True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            raise ServingError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not supported")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise api.bad_request(f"invalid Content-Length: {length_text!r}") from None
        limit = self.server.max_request_bytes
        if length > limit:
            self.close_connection = True  # the body is not read
            raise ServingError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes exceeds the limit of {limit} bytes",
            )
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True  # the rest may still come: the stream is out of step
            raise ServingError(
                HTTPStatus.REQUEST_TIMEOUT,
                f"request body not received within {self.server.request_timeout:g} s",
            ) from None
        if len(body) < length:
            self.close_connection = True
            raise api.bad_request("request body shorter than its Content-Length")
        return body

    def _route(self, method: str, path: str, body: bytes) -> None:
        app = self.server.app
        where = api.route(method, path)
        if where.kind == "page":
            self._send(HTTPStatus.OK, page.render(app.model_name), "text/html; charset=utf-8")
            return
        if where.kind == "metrics":
            self._send(HTTPStatus.OK, app.metrics().encode(), "text/plain; version=0.0.4")
            return
        if where.kind == "status":
            result = app.status(where.name, where.version)
        elif where.kind == "metadata":
            result = app.metadata(where.name, where.version)
        elif where.kind == "predict":
            result = app.predict(where.name, where.version, body)
        else:
            app.refuse(where.verb, where.name, where.version)  # raises
        self._send_json(HTTPStatus.OK, result)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True

    def __init__(
        self,
        address,
        app: ModelServer | None,
        *,
        max_request_bytes: int,
        quiet: bool,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ):
        self.app = app
        self.max_request_bytes = int(max_request_bytes)
        self.request_timeout = float(request_timeout)
        self.quiet = quiet
        self.stopping = False
        self._connections: set[_Handler] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, handler: _Handler, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(handler)
            else:
                self._connections.discard(handler)

    def close_idle_connections(self) -> None:
        """Wake up handlers waiting for another request on a kept-alive connection."""
        self.stopping = True
        with self._connections_lock:
            idle = [h for h in self._connections if not h.busy]
        for handler in idle:
            try:
                handler.connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass


def make_http_server(
    app: ModelServer | None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    quiet: bool = False,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> _HTTPServer:
    """An HTTP server for `app` bound to host:port (port 0 picks a free port).

    `app` may be None and set (`server.app = ...`) before `serve_forever`. A connection that
    sends nothing for `request_timeout` seconds is closed (mid-body: with a 408 first).
    """
    if max_request_bytes < 1:
        raise ValueError(f"max_request_bytes must be positive, got {max_request_bytes}")
    if not request_timeout > 0:
        raise ValueError(f"request_timeout must be positive, got {request_timeout}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("_Server", (_HTTPServer,), {"address_family": family})
    try:
        return server_class((host, port), app, max_request_bytes=max_request_bytes, quiet=quiet,
                            request_timeout=request_timeout)  # fmt: skip
    except OSError as e:
        raise NmtError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def stop_http_server(httpd: _HTTPServer) -> None:
    """Stop accepting, let requests in flight finish, close idle connections."""
    httpd.shutdown()
    httpd.close_idle_connections()
    httpd.server_close()
