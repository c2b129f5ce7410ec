"""`nmt serve`: a small HTTP server that speaks the TensorFlow Serving REST API for exports.

It serves the versions that `nmt export` writes under EXPORT_BASE (EXPORT_BASE/N/) with the
subset of TF Serving's REST API (tensorflow/serving `g3doc/api_rest.md`) that clients use, so
a client written for one works against the other, and a page at `/` to try the model. The
parts live in `nmt.serving` (see its docstring): `api` (routes, JSON <-> arrays, errors),
`batcher`, `versions`, `server` (`ModelServer`: versions, file-system polling, the API calls),
`httpd` (HTTP), `page`. This module starts them together; the names below are re-exported
for callers of the earlier single module.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

from nmt.serving.api import ServingError
from nmt.serving.batcher import Batcher
from nmt.serving.httpd import make_http_server, stop_http_server
from nmt.serving.options import (
    DEFAULT_BATCH_TIMEOUT_MS,
    DEFAULT_HOST,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MODEL_NAME,
    DEFAULT_POLL_SECONDS,
    DEFAULT_PORT,
)
from nmt.serving.server import ModelServer, stderr_log
from nmt.serving.versions import ModelVersion

__all__ = [
    "Batcher",
    "ModelServer",
    "ModelVersion",
    "ServingError",
    "make_http_server",
    "serve",
    "stop_http_server",
]


def serve(
    export_base: str | Path,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS,
    all_versions: bool = False,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    quiet: bool = False,
    ready: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """Load the export and serve until SIGTERM or SIGINT, then shut down gracefully.

    `ready(message)` is called once the server listens (the message has the URL); `log`
    gets the version events (new version loaded, old one unloaded; default: stderr). The
    address is bound before the model is loaded, so that a busy port or a bad host fails at
    once; connections that arrive meanwhile wait in the listen queue.
    """
    httpd = make_http_server(None, host, port, max_request_bytes=max_request_bytes, quiet=quiet)
    try:
        httpd.app = ModelServer(
            export_base,
            model_name,
            max_batch_size=max_batch_size,
            batch_timeout_ms=batch_timeout_ms,
            all_versions=all_versions,
            poll_seconds=poll_seconds,
            log=log or stderr_log,
        )
    except BaseException:
        httpd.server_close()
        raise
    app = httpd.app
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    try:
        if ready is not None:
            ready(_ready_message(httpd, app))
        while not stop.wait(0.5):
            pass
    finally:
        stop_http_server(httpd)
        thread.join()
        app.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _ready_message(httpd, app: ModelServer) -> str:
    bound_host, bound_port = httpd.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    versions = ", ".join(str(v) for v in sorted(app.versions))
    polling = f", polling for new versions every {app.poll_seconds:g} s" if app.poll_seconds else ""
    return (
        f"serving model '{app.model_name}' version(s) {versions} from {app.export_base}"
        f"{polling}; try it at http://{shown}:{bound_port}/ or the REST API at "
        f"http://{shown}:{bound_port}/v1/models/{app.model_name}"
    )
