"""nmt.serving.api without a server or a model: routes, :predict bodies to arrays, outputs
to JSON, and the model-name rule that the CLI and ModelServer share."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.serving import api
from nmt.serving.options import model_name_problem


@pytest.mark.parametrize(
    "method, path, want",
    [
        ("GET", "/", api.Route("page")),
        ("GET", "/index.html", api.Route("page")),
        ("GET", "/monitoring/prometheus/metrics", api.Route("metrics")),
        ("GET", "/v1/models/en-de", api.Route("status", "en-de")),
        ("GET", "/v1/models/en-de/versions/7/", api.Route("status", "en-de", "7")),
        ("GET", "/v1/models/m.1/metadata", api.Route("metadata", "m.1")),
        ("POST", "/v1/models/m/versions/2:predict", api.Route("predict", "m", "2", "predict")),
        ("POST", "/v1/models/m:regress", api.Route("unsupported", "m", None, "regress")),
    ],
)
def test_routes(method, path, want):
    assert api.route(method, path) == want


@pytest.mark.parametrize(
    "method, path, status, fragment",
    [
        ("POST", "/", 404, "Not found: /"),
        ("GET", "/v2/models/m", 404, "Not found"),
        ("GET", "/v1/models", 400, "Missing model name"),
        ("GET", "/v1/models/m:predict", 400, "Malformed request: GET /v1/models/m:predict"),
        ("POST", "/v1/models/m:explain", 400, "Malformed request"),
    ],
)
def test_paths_the_api_does_not_have(method, path, status, fragment):
    with pytest.raises(api.ServingError) as caught:
        api.route(method, path)
    assert caught.value.status == status and fragment in caught.value.message


def test_parse_version():
    assert api.parse_version(None) is None and api.parse_version("12") == 12
    for bad in ("x", "-1", "1" * 19):
        with pytest.raises(api.ServingError, match="Failed to convert version"):
            api.parse_version(bad)


def _specs():
    import tensorflow as tf

    return {
        "serving_default": {"text": tf.TensorSpec([None], tf.string)},
        "translate_ids": {
            "source_ids": tf.TensorSpec([None, None], tf.int32),
            "source_lengths": tf.TensorSpec([None], tf.int32),
        },
    }


def test_parse_predict_row_and_columnar():
    request = api.parse_predict(b'{"instances": ["a", {"b64": "w7w="}]}', _specs())
    assert request.signature == "serving_default" and request.rows
    assert request.inputs["text"].tolist() == [b"a", "ü".encode()]
    body = (
        b'{"signature_name": "translate_ids", '
        b'"inputs": {"source_ids": [[5, 6]], "source_lengths": [2]}}'
    )
    request = api.parse_predict(body, _specs())
    assert not request.rows and request.inputs["source_ids"].dtype == np.int32
    assert request.inputs["source_ids"].tolist() == [[5, 6]]


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"", "The document is empty"),
        (b'{"instances": [1]}', "expected a string"),
        (b'{"instances": ["a"], "inputs": ["a"]}', "cannot be specified"),
        (b'{"signature_name": "nope", "inputs": ["a"]}', '"nope" not found'),
        (
            b'{"signature_name": "translate_ids", "inputs": {"source_ids": [[1], [2, 3]], '
            b'"source_lengths": [1, 2]}}',
            "different lengths",
        ),
        (
            b'{"signature_name": "translate_ids", "inputs": {"source_ids": [[1]], '
            b'"source_lengths": [4294967296]}}',
            "out of range for int32",
        ),
    ],
)
def test_parse_predict_refuses_bad_bodies(body, fragment):
    with pytest.raises(api.ServingError) as caught:
        api.parse_predict(body, _specs())
    assert caught.value.status == 400 and fragment in caught.value.message


def test_predict_response_formats():
    outputs = {
        "translation": np.array([b"x", "ü".encode()], object),
        "score": np.array([-1.5, -2.0]),
    }
    assert api.predict_response(outputs, rows=True) == {
        "predictions": [{"translation": "x", "score": -1.5}, {"translation": "ü", "score": -2.0}]
    }
    assert api.predict_response(outputs, rows=False) == {
        "outputs": {"translation": ["x", "ü"], "score": [-1.5, -2.0]}
    }
    assert api.predict_response({"score": np.array([1.0])}, rows=True) == {"predictions": [1.0]}


def test_clean_tf_message_keeps_the_reason_only():
    message = (
        "Graph execution error:\n\nDetected at node foo defined at (most recent call last):\n"
        "  File x\n{{function_node __inference_f_12}} source_lengths must be >= 0 "
        "[[{{node assert}}]]\n"
    )
    assert api.clean_tf_message(message) == "source_lengths must be >= 0"


def test_model_name_rule():
    assert model_name_problem("en-de_v1.2") is None
    for bad in ("a b", "", "a/b", "a:b"):
        assert model_name_problem(bad) == "use letters, digits, '_', '-', '.'"
