"""`nmt serve`: a small HTTP server that speaks the TensorFlow Serving REST API for exports.

It serves the versions that `nmt export` writes under EXPORT_BASE (EXPORT_BASE/N/), with the
subset of TF Serving's REST API (tensorflow/serving `g3doc/api_rest.md`) that clients use, so
a client written for one works against the other:

    GET  /v1/models/NAME[/versions/N]             status: {"model_version_status": [...]}
    GET  /v1/models/NAME[/versions/N]/metadata    {"model_spec": ..., "metadata":
                                                   {"signature_def": {"signature_def": ...}}}
    POST /v1/models/NAME[/versions/N]:predict     row:      {"instances": [...]}
                                                            -> {"predictions": [...]}
                                                  columnar: {"inputs": {...} or [...]}
                                                            -> {"outputs": {...}}
    GET  /monitoring/prometheus/metrics           request, batch and model-run counters

`"signature_name"` picks `serving_default` (text) or `translate_ids`. Errors are
`{"error": "..."}` with TF Serving's status codes: 400 for a malformed request or bad input,
404 for an unknown model, version or path, 413 for a body over `max_request_bytes`,
500 for a failure inside the model.

Without `all_versions` only the latest version is loaded and served (TF Serving's default
"latest" policy); the others are listed in the status with state "END". Text requests to a
version go through one `Batcher`: strings of requests that arrive within `batch_timeout_ms`
of each other (up to `max_batch_size` strings) are translated in one model run and the
results are split back.
"""

from __future__ import annotations

import base64
import json
import queue
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from nmt import constants
from nmt.errors import NmtError

DEFAULT_MODEL_NAME = "nmt"
DEFAULT_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_BATCH_TIMEOUT_MS = 5.0
WARMUP_TEXT = "warm up"

_PREDICT_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:(?::(?P<verb>[A-Za-z]+))|(?P<metadata>/metadata))?/?$"
)


class ServingError(Exception):
    """An error returned to the client as {"error": message} with an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


def _bad_request(message: str) -> ServingError:
    return ServingError(HTTPStatus.BAD_REQUEST, message)


# === Batching ===


@dataclass
class _Job:
    texts: list[bytes]
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None


_STOP = object()


class Batcher:
    """Collects 1-D string inputs from concurrent callers and runs `fn` once per batch.

    A batch starts with the first waiting request and takes the requests that arrive within
    `timeout_s` of it, until `max_batch_size` strings (a request is never split; one larger
    than `max_batch_size` runs alone). `fn(texts: list[bytes]) -> {name: array (B, ...)}`
    runs on the batcher's thread; each caller gets its own rows back.
    """

    def __init__(self, fn: Callable, *, max_batch_size: int, timeout_s: float, name: str = ""):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be positive, got {max_batch_size}")
        self._fn = fn
        self.max_batch_size = int(max_batch_size)
        self.timeout_s = max(float(timeout_s), 0.0)
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self.requests = 0  # requests served
        self.strings = 0  # strings translated
        self.runs = 0  # calls of fn
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, texts: list[bytes]) -> dict[str, np.ndarray]:
        """Translate `texts` (possibly together with other callers' texts); blocks."""
        job = _Job(list(texts))
        with self._lock:
            if self._closed:
                raise ServingError(HTTPStatus.SERVICE_UNAVAILABLE, "the server is shutting down")
            self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.outputs is not None
        return job.outputs

    def close(self) -> None:
        """Finish the queued requests, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        pending = None
        while True:
            job = pending if pending is not None else self._queue.get()
            pending = None
            if job is _STOP:
                return
            batch, size = [job], len(job.texts)
            deadline = time.monotonic() + self.timeout_s
            while size < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    nxt = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else (self._queue.get_nowait())
                    )
                except queue.Empty:
                    break
                if nxt is _STOP or size + len(nxt.texts) > self.max_batch_size:
                    pending = nxt
                    break
                batch.append(nxt)
                size += len(nxt.texts)
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        texts = [t for job in batch for t in job.texts]
        try:
            self.runs += 1
            outputs = self._fn(texts)
            start = 0
            for job in batch:
                end = start + len(job.texts)
                job.outputs = {name: value[start:end] for name, value in outputs.items()}
                start = end
        except BaseException as e:  # every waiting caller gets the error
            for job in batch:
                job.error = e
        self.requests += len(batch)
        self.strings += len(texts)
        for job in batch:
            job.done.set()


# === Models ===


def _tensor_specs(concrete_fn) -> dict[str, Any]:
    """{input name: tf.TensorSpec} of a loaded signature function."""
    _, kwargs = concrete_fn.structured_input_signature
    return dict(kwargs)


_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces")


def _clean_tf_message(message: str) -> str:
    """The useful part of a TensorFlow runtime error: no traceback, node or op names."""
    kept = []
    for line in message.splitlines():
        if not line.strip() or line[0].isspace() or line.startswith(_TF_NOISE):
            continue
        line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)
        kept.append(re.sub(r"\s*\[\[\{\{node .*$", "", line).strip())
    return " ".join(k for k in kept if k)[:1000]


def _model_error(e: BaseException) -> ServingError:
    import tensorflow as tf

    if isinstance(e, ServingError):
        return e
    message = _clean_tf_message(getattr(e, "message", None) or str(e)) or type(e).__name__
    if isinstance(e, tf.errors.InvalidArgumentError):
        return _bad_request(message)
    return ServingError(HTTPStatus.INTERNAL_SERVER_ERROR, message)


class ModelVersion:
    """One loaded export version: its signatures, a text batcher and its metadata."""

    def __init__(
        self, name: str, version: int, path: Path, *, max_batch_size: int, batch_timeout_ms: float
    ):
        from nmt.export import load_export

        self.name = name
        self.version = version
        self.path = path
        self.module = load_export(path)
        self.signatures = dict(self.module.signatures)
        if constants.SERVING_SIGNATURE not in self.signatures:
            raise NmtError(f"{path}: no {constants.SERVING_SIGNATURE!r} signature")
        self.specs = {key: _tensor_specs(fn) for key, fn in self.signatures.items()}
        self._text_input = self._single_string_input(constants.SERVING_SIGNATURE)
        self.batcher = Batcher(
            self._run_text,
            max_batch_size=max_batch_size,
            timeout_s=batch_timeout_ms / 1000.0,
            name=f"{name}-{version}",
        )
        self._metadata: dict[str, Any] | None = None

    def _single_string_input(self, key: str) -> str | None:
        import tensorflow as tf

        specs = self.specs[key]
        if len(specs) == 1:
            ((input_name, spec),) = specs.items()
            if spec.dtype == tf.string and spec.shape.rank == 1:
                return input_name
        return None

    def _run_text(self, texts: list[bytes]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        fn = self.signatures[constants.SERVING_SIGNATURE]
        out = fn(**{self._text_input: tf.constant(texts, tf.string)})
        return {name: value.numpy() for name, value in out.items()}

    def warm_up(self) -> None:
        """One translation so that the first request does not pay for graph set-up."""
        self._run_text([WARMUP_TEXT.encode()])

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        if signature == constants.SERVING_SIGNATURE and self._text_input is not None:
            texts = list(inputs[self._text_input])
            try:
                return self.batcher.submit(texts) if texts else self._run_text(texts)
            except Exception as e:
                raise _model_error(e) from None
        fn = self.signatures[signature]
        specs = self.specs[signature]
        tensors = {k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()}
        try:
            out = fn(**tensors)
        except Exception as e:
            raise _model_error(e) from None
        return {name: value.numpy() for name, value in out.items()}

    def metadata(self) -> dict[str, Any]:
        """The SignatureDefMap as TF Serving's GetModelMetadata returns it, as JSON."""
        if self._metadata is None:
            from google.protobuf import json_format
            from tensorflow.core.protobuf import saved_model_pb2

            saved = saved_model_pb2.SavedModel()
            saved.ParseFromString((self.path / "saved_model.pb").read_bytes())
            defs = saved.meta_graphs[0].signature_def
            self._metadata = {
                key: json_format.MessageToDict(
                    defs[key],
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
                for key in sorted(defs)
            }
        return self._metadata

    def close(self) -> None:
        self.batcher.close()


def _version_dirs(export_base: Path) -> dict[int, Path]:
    from nmt.export import list_versions

    return {
        v: export_base / str(v)
        for v in list_versions(export_base)
        if (export_base / str(v) / "saved_model.pb").is_file()
    }


class ModelServer:
    """The served model: versions under `export_base`, request handling without HTTP."""

    def __init__(
        self,
        export_base: str | Path,
        model_name: str = DEFAULT_MODEL_NAME,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS,
        all_versions: bool = False,
        warm_up: bool = True,
    ):
        base = Path(export_base)
        if not base.is_dir():
            raise NmtError(f"{base}: export directory not found")
        if (base / "saved_model.pb").is_file():
            raise NmtError(
                f"{base}: is a version directory; pass its parent (the export base that "
                "holds the numbered versions)"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", model_name):
            raise NmtError(f"--model-name {model_name!r}: use letters, digits, '_', '-', '.'")
        if max_batch_size < 1:
            raise NmtError(f"--max-batch-size must be positive, got {max_batch_size}")
        if batch_timeout_ms < 0:
            raise NmtError(f"--batch-timeout-ms must be >= 0, got {batch_timeout_ms}")
        self.export_base = base
        self.model_name = model_name
        self.known = _version_dirs(base)
        if not self.known:
            raise NmtError(
                f"{base}: no exported versions (expected {base}/N/saved_model.pb; "
                "write one with `nmt export`)"
            )
        self.latest = max(self.known)
        wanted = sorted(self.known) if all_versions else [self.latest]
        self.versions: dict[int, ModelVersion] = {}
        self.stats: dict[str, int] = {"requests": 0, "errors": 0}
        self._stats_lock = threading.Lock()
        try:
            for v in wanted:
                loaded = ModelVersion(
                    model_name,
                    v,
                    self.known[v],
                    max_batch_size=max_batch_size,
                    batch_timeout_ms=batch_timeout_ms,
                )
                self.versions[v] = loaded
                if warm_up:
                    loaded.warm_up()
        except BaseException:
            self.close()
            raise

    # --- lookup

    def _version(self, name: str, version: str | None) -> ModelVersion:
        number = self._parse_version(version)
        if name != self.model_name:
            which = "Latest" if number is None else "Specific"
            spec = name if number is None else f"{name}, {number}"
            raise ServingError(
                HTTPStatus.NOT_FOUND, f"Servable not found for request: {which}({spec})"
            )
        if number is None:
            return self.versions[self.latest]
        if number not in self.versions:
            raise ServingError(
                HTTPStatus.NOT_FOUND, f"Servable not found for request: Specific({name}, {number})"
            )
        return self.versions[number]

    @staticmethod
    def _parse_version(version: str | None) -> int | None:
        if version is None:
            return None
        if not version.isdigit() or len(version) > 18:
            raise _bad_request(f"Failed to convert version: {version}")
        return int(version)

    # --- API

    def status(self, name: str, version: str | None = None) -> dict[str, Any]:
        number = self._parse_version(version)
        if name != self.model_name:
            raise ServingError(HTTPStatus.NOT_FOUND, f"Could not find any versions of model {name}")
        if number is not None and number not in self.known:
            raise ServingError(
                HTTPStatus.NOT_FOUND, f"Could not find version {number} of model {name}"
            )
        numbers = [number] if number is not None else sorted(self.known, reverse=True)
        return {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": "AVAILABLE" if v in self.versions else "END",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for v in numbers
            ]
        }

    def metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        served = self._version(name, version)
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(served.version)},
            "metadata": {"signature_def": {"signature_def": served.metadata()}},
        }

    def predict(self, name: str, version: str | None, body: bytes) -> dict[str, Any]:
        served = self._version(name, version)
        request = _parse_json(body)
        signature = request.get("signature_name", constants.SERVING_SIGNATURE)
        if not isinstance(signature, str):
            raise _bad_request("'signature_name' must be a string")
        if signature not in served.signatures:
            raise _bad_request(f'Serving signature name: "{signature}" not found in signature def')
        specs = served.specs[signature]
        has_rows, has_columns = "instances" in request, "inputs" in request
        if has_rows and has_columns:
            raise _bad_request("Both 'instances' and 'inputs' cannot be specified at the same time")
        if not has_rows and not has_columns:
            raise _bad_request("Missing 'inputs' or 'instances' key")
        if has_rows:
            inputs = _row_inputs(request["instances"], specs)
        else:
            inputs = _columnar_inputs(request["inputs"], specs)
        outputs = served.run(signature, inputs)
        if has_rows:
            return {"predictions": _row_outputs(outputs)}
        return {"outputs": _columnar_outputs(outputs)}

    def metrics(self) -> str:
        """Counters in the Prometheus text format."""
        lines = [
            "# TYPE nmt_http_requests_total counter",
            f"nmt_http_requests_total {self.stats['requests']}",
            "# TYPE nmt_http_errors_total counter",
            f"nmt_http_errors_total {self.stats['errors']}",
        ]
        for metric, attr in (
            ("nmt_predict_requests_total", "requests"),
            ("nmt_translated_strings_total", "strings"),
            ("nmt_model_runs_total", "runs"),
        ):
            lines.append(f"# TYPE {metric} counter")
            for v, served in sorted(self.versions.items()):
                value = getattr(served.batcher, attr)
                lines.append(f'{metric}{{model="{self.model_name}",version="{v}"}} {value}')
        return "\n".join(lines) + "\n"

    def count(self, status: int) -> None:
        with self._stats_lock:
            self.stats["requests"] += 1
            if status >= 400:
                self.stats["errors"] += 1

    def close(self) -> None:
        for served in self.versions.values():
            served.close()


# === JSON <-> arrays ===


def _parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise _bad_request("JSON Parse error: The document is empty")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _bad_request(f"JSON Parse error: {e}") from None
    if not isinstance(value, dict):
        raise _bad_request("JSON Value: the request body must be a JSON object")
    return value


def _leaf_converter(spec, where: str) -> tuple[Callable[[Any], Any], Any]:
    """(convert one JSON leaf, numpy dtype) for a TensorSpec."""
    import tensorflow as tf

    dtype = spec.dtype
    if dtype == tf.string:

        def convert(x):
            if isinstance(x, str):
                try:
                    return x.encode("utf-8")
                except UnicodeEncodeError:
                    raise _bad_request(f"{where}: invalid Unicode in a string") from None
            if isinstance(x, dict) and set(x) == {"b64"} and isinstance(x["b64"], str):
                try:
                    return base64.b64decode(x["b64"], validate=True)
                except ValueError:
                    raise _bad_request(f"{where}: invalid base64 in 'b64'") from None
            raise _bad_request(f"{where}: expected a string, got {json.dumps(x)[:50]}")

        return convert, object
    if dtype.is_integer:
        info = np.iinfo(dtype.as_numpy_dtype)

        def convert(x):
            if isinstance(x, bool) or not isinstance(x, int):
                raise _bad_request(f"{where}: expected an integer, got {json.dumps(x)[:50]}")
            if not info.min <= x <= info.max:
                raise _bad_request(f"{where}: {x} is out of range for {dtype.name}")
            return x

        return convert, dtype.as_numpy_dtype
    if dtype.is_floating:

        def convert(x):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise _bad_request(f"{where}: expected a number, got {json.dumps(x)[:50]}")
            return float(x)

        return convert, dtype.as_numpy_dtype
    if dtype == tf.bool:

        def convert(x):
            if not isinstance(x, bool):
                raise _bad_request(f"{where}: expected true or false, got {json.dumps(x)[:50]}")
            return x

        return convert, bool
    raise _bad_request(f"{where}: unsupported input type {dtype.name}")


def _dense(value: Any, convert: Callable[[Any], Any], where: str) -> tuple[tuple[int, ...], list]:
    """(shape, flat values) of a nested JSON list; lists at one depth must have equal lengths."""
    if isinstance(value, list):
        parts = [_dense(v, convert, where) for v in value]
        shapes = {shape for shape, _ in parts}
        if len(shapes) > 1:
            raise _bad_request(
                f"{where}: lists of different lengths at one depth (a tensor is rectangular)"
            )
        inner = shapes.pop() if shapes else ()
        return (len(value), *inner), [x for _, flat in parts for x in flat]
    return (), [convert(value)]


def _to_array(value: Any, spec, name: str) -> np.ndarray:
    where = f"input '{name}'"
    convert, dtype = _leaf_converter(spec, where)
    try:
        shape, flat = _dense(value, convert, where)
    except RecursionError:
        raise _bad_request(f"{where}: nested too deeply") from None
    rank = spec.shape.rank
    if rank is not None and len(shape) != rank:
        raise _bad_request(
            f"{where}: expected a tensor of rank {rank} (shape {_shape_text(spec.shape)}), "
            f"got rank {len(shape)}"
        )
    if rank is not None:
        for got, want in zip(shape, spec.shape.as_list(), strict=True):
            if want is not None and got != want:
                raise _bad_request(
                    f"{where}: expected shape {_shape_text(spec.shape)}, got {list(shape)}"
                )
    array = np.empty(len(flat), dtype=dtype)
    array[:] = flat
    return array.reshape(shape)


def _shape_text(shape) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape.as_list()) + "]"


def _is_named_object(value: Any) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def _row_inputs(instances: Any, specs: dict[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise _bad_request("'instances' must be a list (one item per example)")
    names = sorted(specs)
    columns: dict[str, list] = {n: [] for n in names}
    for i, item in enumerate(instances):
        if _is_named_object(item):
            if set(item) != set(names):
                raise _bad_request(f"instance {i}: expected the inputs {names}, got {sorted(item)}")
            for n in names:
                columns[n].append(item[n])
        elif len(names) == 1:
            columns[names[0]].append(item)
        else:
            raise _bad_request(
                f"instance {i}: this signature has several inputs {names}; "
                "give each instance as an object"
            )
    return {n: _to_array(columns[n], specs[n], n) for n in names}


def _columnar_inputs(inputs: Any, specs: dict[str, Any]) -> dict[str, np.ndarray]:
    names = sorted(specs)
    if _is_named_object(inputs):
        if set(inputs) != set(names):
            raise _bad_request(f"'inputs': expected the inputs {names}, got {sorted(inputs)}")
        return {n: _to_array(inputs[n], specs[n], n) for n in names}
    if len(names) != 1:
        raise _bad_request(f"'inputs': this signature has several inputs {names}; use an object")
    return {names[0]: _to_array(inputs, specs[names[0]], names[0])}


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == object or array.dtype.kind == "S":
        return _map_nested(array.tolist(), lambda b: b.decode("utf-8", errors="replace"))
    return array.tolist()


def _map_nested(value: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)


def _row_outputs(outputs: dict[str, np.ndarray]) -> list:
    if not outputs:
        return []
    columns = {name: _json_value(value) for name, value in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    count = len(next(iter(columns.values())))
    return [{name: column[i] for name, column in columns.items()} for i in range(count)]


def _columnar_outputs(outputs: dict[str, np.ndarray]) -> Any:
    columns = {name: _json_value(value) for name, value in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    return columns


# === HTTP ===


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nmt-serve"
    timeout = 60  # seconds a connection may sit idle or stall mid-request
    server: _HTTPServer

    # --- connection tracking for a graceful shutdown

    def setup(self) -> None:
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

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body() if method in ("POST", "PUT") else b""
            self._route(method, urlsplit(self.path).path, body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away: nothing to send
            self.close_connection = True
        except ServingError as e:
            self._error(e.status, e.message)
        except Exception as e:  # a bug: answer 500, keep serving
            self.log_error("internal error: %r", e)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"Internal error: {e}")

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
            raise _bad_request(f"invalid Content-Length: {length_text!r}") from None
        limit = self.server.max_request_bytes
        if length > limit:
            self.close_connection = True  # the body is not read
            raise ServingError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes exceeds the limit of {limit} bytes",
            )
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise _bad_request("request body shorter than its Content-Length")
        return body

    def _route(self, method: str, path: str, body: bytes) -> None:
        app = self.server.app
        if path == "/monitoring/prometheus/metrics" and method == "GET":
            self._send(HTTPStatus.OK, app.metrics().encode(), "text/plain; version=0.0.4")
            return
        if not path.startswith("/v1/"):
            raise ServingError(HTTPStatus.NOT_FOUND, f"Not found: {path}")
        match = _PREDICT_PATH.match(path)
        malformed = _bad_request(f"Malformed request: {method} {path}")
        if match is None:
            if path.rstrip("/") == "/v1/models" and method == "GET":
                raise _bad_request("Missing model name in request.")
            raise malformed
        name, version = match["name"], match["version"]
        verb, metadata = match["verb"], match["metadata"]
        if method == "GET" and verb is None:
            result = app.metadata(name, version) if metadata else app.status(name, version)
        elif method == "POST" and verb == "predict":
            result = app.predict(name, version, body)
        elif method == "POST" and verb in ("classify", "regress"):
            app._version(name, version)  # 404 for an unknown model first, as TF Serving
            raise _bad_request(
                f"{verb} is not supported: the model has predict signatures "
                f"({constants.SERVING_SIGNATURE}, {constants.IDS_SIGNATURE})"
            )
        else:
            raise malformed
        self._send_json(HTTPStatus.OK, result)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True

    def __init__(self, address, app: ModelServer | None, *, max_request_bytes: int, quiet: bool):
        self.app = app
        self.max_request_bytes = int(max_request_bytes)
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
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    quiet: bool = False,
) -> _HTTPServer:
    """An HTTP server for `app` bound to host:port (port 0 picks a free port).

    `app` may be None and set (`server.app = ...`) before `serve_forever`.
    """
    if max_request_bytes < 1:
        raise NmtError(f"--max-request-bytes must be positive, got {max_request_bytes}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("_Server", (_HTTPServer,), {"address_family": family})
    try:
        return server_class((host, port), app, max_request_bytes=max_request_bytes, quiet=quiet)
    except OSError as e:
        raise NmtError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def stop_http_server(httpd: _HTTPServer) -> None:
    """Stop accepting, let requests in flight finish, close idle connections."""
    httpd.shutdown()
    httpd.close_idle_connections()
    httpd.server_close()


def serve(
    export_base: str | Path,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS,
    all_versions: bool = False,
    quiet: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Load the export and serve until SIGTERM or SIGINT, then shut down gracefully.

    `ready(message)` is called once the server listens (the message has the URL). The
    address is bound before the model is loaded, so that a busy port or a bad host fails
    at once; connections that arrive meanwhile wait in the listen queue.
    """
    httpd = make_http_server(None, host, port, max_request_bytes=max_request_bytes, quiet=quiet)
    try:
        httpd.app = ModelServer(
            export_base,
            model_name,
            max_batch_size=max_batch_size,
            batch_timeout_ms=batch_timeout_ms,
            all_versions=all_versions,
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
        bound_host, bound_port = httpd.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        versions = ", ".join(str(v) for v in sorted(app.versions))
        if ready is not None:
            ready(
                f"serving model '{app.model_name}' version(s) {versions} from "
                f"{app.export_base} at http://{shown}:{bound_port}/v1/models/{app.model_name}"
            )
        while not stop.wait(0.5):
            pass
    finally:
        stop_http_server(httpd)
        thread.join()
        app.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
