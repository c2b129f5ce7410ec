"""`nmt serve` under load, under fuzzed requests, and next to a stalled client.

- scripts/load_test_serve.py starts `nmt serve` on 127.0.0.1 and drives it with 8 clients
  for 10 s, every 5th request of a client a malformed one: no errors, every good answer
  well-formed, every malformed request refused with a 4xx {"error": ...}, the server stops
  cleanly on SIGTERM;
- hypothesis posts arbitrary bytes and arbitrary JSON to :predict: the answer is always a
  200 with predictions/outputs or a 4xx {"error": ...}, never a 500 or a dropped connection,
  and a good request still gets its translation afterwards;
- a client that sends half a request and stalls does not hold up the others.

Uses the session's tiny export (tests/helpers/export.py `make_tiny_export`).
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.export import INPUTS, make_tiny_export, run_text
from tests.helpers.serve import Running, call

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_export(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(tiny):
    running = Running(tiny.export_base, batch_timeout_ms=2.0)
    yield running
    running.close()


@pytest.fixture(scope="module")
def expected(tiny):
    from nmt.export import load_export

    return run_text(load_export(tiny.version_dir), INPUTS)


def test_load_script_8_clients_10_s_with_malformed_requests(tiny):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "load_test_serve.py"), "--export-dir",
         str(tiny.export_base), "--clients", "8", "--strings", "3", "--duration", "10",
         "--malformed-every", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    report = json.loads(result.stdout)
    assert report["url"].startswith("http://127.0.0.1:")
    assert report["errors"] == 0 and report["error_kinds"] == {}
    assert report["requests"] > 0 and report["strings_per_request"] == 3
    assert report["strings_per_model_run"] >= 3  # requests are never split across model runs
    assert report["malformed_sent"] > 0
    assert report["malformed_refused"] == report["malformed_sent"]
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert report["server_exit_code"] == 0  # SIGTERM: a clean shutdown


def test_load_script_refuses_other_hosts(tiny):
    for args in (
        ["--url", "http://192.0.2.1:8501/v1/models/nmt"],
        ["--url", "http://example.com:8501/v1/models/nmt"],
        ["--export-dir", str(tiny.export_base), "--serve-args", "--host 0.0.0.0"],
    ):
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "load_test_serve.py"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "refusing" in result.stderr or "--host is not allowed" in result.stderr


# === Fuzzing :predict ===

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
SIGNATURES = st.sampled_from(["serving_default", "translate_ids", "nope", 7])
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"instances": JSON}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"inputs": JSON}, optional={"signature_name": SIGNATURES}).map(
        lambda v: json.dumps(v).encode()
    ),
    st.fixed_dictionaries(
        {"instances": st.lists(st.text(max_size=30), max_size=4)},
        optional={"signature_name": SIGNATURES},
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "signature_name": st.just("translate_ids"),
            "inputs": st.fixed_dictionaries(
                {
                    "source_ids": st.lists(
                        st.lists(st.integers(-5, 2**31 - 1), min_size=2, max_size=2), max_size=3
                    ),
                    "source_lengths": st.lists(st.integers(-2, 3), max_size=3),
                }
            ),
        }
    ).map(lambda v: json.dumps(v).encode()),
)


def _well_formed_success(out) -> bool:
    if not isinstance(out, dict) or len(out) != 1:
        return False
    if "predictions" in out:
        return isinstance(out["predictions"], list)
    return "outputs" in out


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(body=BODIES)
def test_any_body_gets_a_well_formed_answer(server, body):
    status, out = call(server.url("/v1/models/nmt:predict"), raw=body, method="POST")
    assert status in (200, 400, 404, 413), (status, out, body[:200])
    if status == 200:
        assert _well_formed_success(out), (out, body[:200])
        predictions = out.get("predictions") or []
        for p in predictions:
            if isinstance(p, dict) and "score" in p:
                assert math.isfinite(p["score"])
    else:
        assert isinstance(out, dict) and set(out) == {"error"}, (status, out, body[:200])
        assert isinstance(out["error"], str) and out["error"]


def test_server_still_translates_after_fuzzing(server, expected):
    status, out = call(server.url("/v1/models/nmt:predict"), {"instances": INPUTS})
    assert status == 200
    assert [p["translation"] for p in out["predictions"]] == expected[0]


# === A stalled client ===


def test_stalled_client_does_not_block_others(server, expected):
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        stalled.sendall(
            b"POST /v1/models/nmt:predict HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"instances": ['
        )  # and nothing more
        half_headers = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        half_headers.sendall(b"GET /v1/models/nmt HTTP/1.1\r\nHo")
        predict = server.url("/v1/models/nmt:predict")
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: call(predict, {"instances": [INPUTS[i]]}), range(4)))
        for i, (status, out) in enumerate(results):
            assert status == 200 and out["predictions"][0]["translation"] == expected[0][i]
        half_headers.close()
    finally:
        stalled.close()
    status, _ = call(server.url("/v1/models/nmt"))
    assert status == 200


# === Clients that stall or leave mid-body, and the other HTTP methods ===


def _raw(port: int, request: bytes, *, close_after_send=False, timeout=30) -> bytes:
    """Everything the server sends back on one connection until it closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        if close_after_send:
            return b""
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_body_that_stops_coming_gets_a_408_and_the_connection_closed(tiny, expected, capfd):
    running = Running(tiny.export_base, batch_timeout_ms=2.0, request_timeout=1.0)
    try:
        answer = _raw(running.port, b"POST /v1/models/nmt:predict HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"instances\": [")  # fmt: skip
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in head
        assert json.loads(body) == {"error": "request body not received within 1 s"}
        left = b"POST /v1/models/nmt:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"
        for _ in range(20):  # clients that leave mid-body
            _raw(running.port, left, close_after_send=True)
        status, out = call(running.url("/v1/models/nmt:predict"), {"instances": INPUTS})
        assert status == 200
        assert [p["translation"] for p in out["predictions"]] == expected[0]
    finally:
        running.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PATCH"])
def test_other_methods_get_a_json_4xx(server, method):
    path = "/v1/models/nmt:predict"
    answer = _raw(server.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close"
                  "\r\nContent-Length: 2\r\n\r\n{}".encode())  # fmt: skip
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/json" in head
    if method == "HEAD":
        assert body == b""  # HEAD answers carry no body
    else:
        assert json.loads(body) == {"error": f"Malformed request: {method} {path}"}
    page = _raw(server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert page.startswith(b"HTTP/1.1 200 ") and page.endswith(b"\r\n\r\n")
