"""A ModelServer behind an HTTP server on a free loopback port in this process, and one HTTP
request."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

HOST = "127.0.0.1"


class Running:
    """A ModelServer behind an HTTP server on a free loopback port, in this process."""

    def __init__(self, export_base, **options):
        from nmt.serve import ModelServer, make_http_server

        http = {"max_request_bytes": options.pop("max_request_bytes", 1 << 20)}
        if "request_timeout" in options:
            http["request_timeout"] = options.pop("request_timeout")
        self.app = ModelServer(export_base, **options)
        self.httpd = make_http_server(self.app, HOST, 0, quiet=True, **http)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def close(self):
        from nmt.serve import stop_http_server

        stop_http_server(self.httpd)
        self.thread.join(timeout=60)
        self.app.close()


def call(url: str, body=None, *, method=None, raw: bytes | None = None, timeout=120):
    """(status, parsed JSON or text) of one HTTP request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, kind = response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        status, payload, kind = e.code, e.read(), e.headers
    if kind.get_content_type() == "application/json":
        return status, json.loads(payload)
    return status, payload.decode()
