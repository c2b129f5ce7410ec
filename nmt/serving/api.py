"""The TF Serving REST API without HTTP: routes, predict requests and responses, errors.

Requests and responses follow tensorflow/serving `g3doc/api_rest.md`:

    GET  /v1/models/NAME[/versions/N]             status: {"model_version_status": [...]}
    GET  /v1/models/NAME[/versions/N]/metadata    {"model_spec": ..., "metadata":
                                                   {"signature_def": {"signature_def": ...}}}
    POST /v1/models/NAME[/versions/N]:predict     row:      {"instances": [...]}
                                                            -> {"predictions": [...]}
                                                  columnar: {"inputs": {...} or [...]}
                                                            -> {"outputs": {...}}
    GET  /monitoring/prometheus/metrics           request, batch and model-run counters
    GET  /                                        a page to try the model (not in TF Serving)

Errors are `ServingError`s, sent as `{"error": "..."}` with TF Serving's status codes: 400 for
a malformed request or bad input, 404 for an unknown model, version or path, 413 for a body
over the size limit, 500 for a failure inside the model, 503 while shutting down.

JSON values become numpy arrays of the signature's TensorSpecs (`predict_inputs`) and outputs
become JSON (`predict_response`); nothing here runs a model.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np

from nmt import constants


class ServingError(Exception):
    """An error returned to the client as {"error": message} with an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


def bad_request(message: str) -> ServingError:
    return ServingError(HTTPStatus.BAD_REQUEST, message)


def not_found(message: str) -> ServingError:
    return ServingError(HTTPStatus.NOT_FOUND, message)


# === Routes ===

METRICS_PATH = "/monitoring/prometheus/metrics"
PAGE_PATHS = ("/", "/index.html")

_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:(?::(?P<verb>[A-Za-z]+))|(?P<metadata>/metadata))?/?$"
)


@dataclass(frozen=True)
class Route:
    """What a request asks for: `kind` is one of page, metrics, status, metadata, predict,
    or unsupported (classify and regress, which these models do not have)."""

    kind: str
    name: str = ""
    version: str | None = None
    verb: str | None = None


def route(method: str, path: str) -> Route:
    """The Route of METHOD PATH; ServingError 404 or 400 for paths the API does not have."""
    if path in PAGE_PATHS and method == "GET":
        return Route("page")
    if path == METRICS_PATH and method == "GET":
        return Route("metrics")
    if not path.startswith("/v1/"):
        raise not_found(f"Not found: {path}")
    match = _MODEL_PATH.match(path)
    malformed = bad_request(f"Malformed request: {method} {path}")
    if match is None:
        if path.rstrip("/") == "/v1/models" and method == "GET":
            raise bad_request("Missing model name in request.")
        raise malformed
    name, version, verb = match["name"], match["version"], match["verb"]
    if method == "GET" and verb is None:
        return Route("metadata" if match["metadata"] else "status", name, version)
    if method == "POST" and verb == "predict":
        return Route("predict", name, version, verb)
    if method == "POST" and verb in ("classify", "regress"):
        return Route("unsupported", name, version, verb)
    raise malformed


def parse_version(version: str | None) -> int | None:
    """The version number of a /versions/N path part (None: the latest)."""
    if version is None:
        return None
    if not version.isdigit() or len(version) > 18:
        raise bad_request(f"Failed to convert version: {version}")
    return int(version)


def unsupported_verb(verb: str) -> ServingError:
    return bad_request(
        f"{verb} is not supported: the model has predict signatures "
        f"({constants.SERVING_SIGNATURE}, {constants.IDS_SIGNATURE})"
    )


# === Predict requests ===


@dataclass
class PredictRequest:
    """A parsed :predict body: the signature, its inputs as arrays, and the format used."""

    signature: str
    inputs: dict[str, np.ndarray]
    rows: bool  # "instances" (row format) rather than "inputs" (columnar)


def parse_predict(body: bytes, specs: dict[str, dict[str, Any]]) -> PredictRequest:
    """Parse a :predict body against `specs` ({signature: {input name: tf.TensorSpec}})."""
    request = parse_json(body)
    signature = request.get("signature_name", constants.SERVING_SIGNATURE)
    if not isinstance(signature, str):
        raise bad_request("'signature_name' must be a string")
    if signature not in specs:
        raise bad_request(f'Serving signature name: "{signature}" not found in signature def')
    has_rows, has_columns = "instances" in request, "inputs" in request
    if has_rows and has_columns:
        raise bad_request("Both 'instances' and 'inputs' cannot be specified at the same time")
    if not has_rows and not has_columns:
        raise bad_request("Missing 'inputs' or 'instances' key")
    if has_rows:
        inputs = row_inputs(request["instances"], specs[signature])
    else:
        inputs = columnar_inputs(request["inputs"], specs[signature])
    return PredictRequest(signature, inputs, has_rows)


def predict_response(outputs: dict[str, np.ndarray], rows: bool) -> dict[str, Any]:
    """The JSON answer to a :predict request in the format the request used."""
    if rows:
        return {"predictions": row_outputs(outputs)}
    return {"outputs": columnar_outputs(outputs)}


def parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise bad_request("JSON Parse error: The document is empty")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise bad_request(f"JSON Parse error: {e}") from None
    if not isinstance(value, dict):
        raise bad_request("JSON Value: the request body must be a JSON object")
    return value


def _leaf_converter(spec, where: str) -> tuple[Callable[[Any], Any], Any]:
    """(convert one JSON leaf, numpy dtype) for a TensorSpec."""
    import tensorflow as tf

    dtype = spec.dtype
    if dtype == tf.string:
        return _string_leaf(where), object
    if dtype.is_integer:
        info = np.iinfo(dtype.as_numpy_dtype)

        def convert(x):
            if isinstance(x, bool) or not isinstance(x, int):
                raise bad_request(f"{where}: expected an integer, got {json.dumps(x)[:50]}")
            if not info.min <= x <= info.max:
                raise bad_request(f"{where}: {x} is out of range for {dtype.name}")
            return x

        return convert, dtype.as_numpy_dtype
    if dtype.is_floating:

        def convert(x):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise bad_request(f"{where}: expected a number, got {json.dumps(x)[:50]}")
            return float(x)

        return convert, dtype.as_numpy_dtype
    if dtype == tf.bool:

        def convert(x):
            if not isinstance(x, bool):
                raise bad_request(f"{where}: expected true or false, got {json.dumps(x)[:50]}")
            return x

        return convert, bool
    raise bad_request(f"{where}: unsupported input type {dtype.name}")


def _string_leaf(where: str) -> Callable[[Any], bytes]:
    """A JSON string (UTF-8) or {"b64": base64} -> bytes."""

    def convert(x):
        if isinstance(x, str):
            try:
                return x.encode("utf-8")
            except UnicodeEncodeError:
                raise bad_request(f"{where}: invalid Unicode in a string") from None
        if isinstance(x, dict) and set(x) == {"b64"} and isinstance(x["b64"], str):
            try:
                return base64.b64decode(x["b64"], validate=True)
            except ValueError:
                raise bad_request(f"{where}: invalid base64 in 'b64'") from None
        raise bad_request(f"{where}: expected a string, got {json.dumps(x)[:50]}")

    return convert


def _dense(value: Any, convert: Callable[[Any], Any], where: str) -> tuple[tuple[int, ...], list]:
    """(shape, flat values) of a nested JSON list; lists at one depth must have equal lengths."""
    if isinstance(value, list):
        parts = [_dense(v, convert, where) for v in value]
        shapes = {shape for shape, _ in parts}
        if len(shapes) > 1:
            raise bad_request(
                f"{where}: lists of different lengths at one depth (a tensor is rectangular)"
            )
        inner = shapes.pop() if shapes else ()
        return (len(value), *inner), [x for _, flat in parts for x in flat]
    return (), [convert(value)]


def to_array(value: Any, spec, name: str) -> np.ndarray:
    """A JSON value (nested lists) as an array of TensorSpec `spec`'s dtype, shape checked."""
    where = f"input '{name}'"
    convert, dtype = _leaf_converter(spec, where)
    try:
        shape, flat = _dense(value, convert, where)
    except RecursionError:
        raise bad_request(f"{where}: nested too deeply") from None
    rank = spec.shape.rank
    if rank is not None and len(shape) != rank:
        raise bad_request(
            f"{where}: expected a tensor of rank {rank} (shape {_shape_text(spec.shape)}), "
            f"got rank {len(shape)}"
        )
    if rank is not None:
        for got, want in zip(shape, spec.shape.as_list(), strict=True):
            if want is not None and got != want:
                raise bad_request(
                    f"{where}: expected shape {_shape_text(spec.shape)}, got {list(shape)}"
                )
    array = np.empty(len(flat), dtype=dtype)
    array[:] = flat
    return array.reshape(shape)


def _shape_text(shape) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape.as_list()) + "]"


def _is_named_object(value: Any) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def row_inputs(instances: Any, specs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a row-format ("instances") request."""
    if not isinstance(instances, list):
        raise bad_request("'instances' must be a list (one item per example)")
    names = sorted(specs)
    columns: dict[str, list] = {n: [] for n in names}
    for i, item in enumerate(instances):
        if _is_named_object(item):
            if set(item) != set(names):
                raise bad_request(f"instance {i}: expected the inputs {names}, got {sorted(item)}")
            for n in names:
                columns[n].append(item[n])
        elif len(names) == 1:
            columns[names[0]].append(item)
        else:
            raise bad_request(
                f"instance {i}: this signature has several inputs {names}; "
                "give each instance as an object"
            )
    return {n: to_array(columns[n], specs[n], n) for n in names}


def columnar_inputs(inputs: Any, specs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a columnar-format ("inputs") request."""
    names = sorted(specs)
    if _is_named_object(inputs):
        if set(inputs) != set(names):
            raise bad_request(f"'inputs': expected the inputs {names}, got {sorted(inputs)}")
        return {n: to_array(inputs[n], specs[n], n) for n in names}
    if len(names) != 1:
        raise bad_request(f"'inputs': this signature has several inputs {names}; use an object")
    return {names[0]: to_array(inputs, specs[names[0]], names[0])}


# === Responses ===


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == object or array.dtype.kind == "S":
        return _map_nested(array.tolist(), lambda b: b.decode("utf-8", errors="replace"))
    return array.tolist()


def _map_nested(value: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)


def row_outputs(outputs: dict[str, np.ndarray]) -> list:
    if not outputs:
        return []
    columns = {name: _json_value(value) for name, value in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    count = len(next(iter(columns.values())))
    return [{name: column[i] for name, column in columns.items()} for i in range(count)]


def columnar_outputs(outputs: dict[str, np.ndarray]) -> Any:
    columns = {name: _json_value(value) for name, value in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    return columns


# === Model errors ===

_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces")


def clean_tf_message(message: str) -> str:
    """The useful part of a TensorFlow runtime error: no traceback, node or op names."""
    kept = []
    for line in message.splitlines():
        if not line.strip() or line[0].isspace() or line.startswith(_TF_NOISE):
            continue
        line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)
        kept.append(re.sub(r"\s*\[\[\{\{node .*$", "", line).strip())
    return " ".join(k for k in kept if k)[:1000]


def model_error(e: BaseException) -> ServingError:
    """A failure while running a signature as a ServingError: 400 for bad input (an
    InvalidArgumentError, such as a failed input check in the graph), 500 otherwise."""
    import tensorflow as tf

    if isinstance(e, ServingError):
        return e
    message = clean_tf_message(getattr(e, "message", None) or str(e)) or type(e).__name__
    if isinstance(e, tf.errors.InvalidArgumentError):
        return bad_request(message)
    return ServingError(HTTPStatus.INTERNAL_SERVER_ERROR, message)
