"""`nmt serve` end to end on loopback: TF Serving REST formats, errors, concurrency, batching,
the `nmt serve` process with SIGTERM, and scripts/serving_client.py.

Uses the session's tiny export (tests/helpers/export.py `make_tiny_export`).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nmt.constants import IDS_SIGNATURE, SERVING_SIGNATURE
from tests.helpers.export import INPUTS, make_tiny_export, run_text
from tests.helpers.serve import HOST, Running, call

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_export(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def expected(tiny):
    """Translations and scores straight from the loaded SavedModel signature."""
    from nmt.export import load_export

    return run_text(load_export(tiny.version_dir), INPUTS)


@pytest.fixture(scope="module")
def server(tiny):
    running = Running(tiny.export_base, batch_timeout_ms=2.0)
    yield running
    running.close()


# === Formats ===


def test_predict_row_format(server, expected):
    texts, scores = expected
    status, out = call(server.url("/v1/models/nmt:predict"), {"instances": INPUTS})
    assert status == 200, out
    assert [p["translation"] for p in out["predictions"]] == texts
    assert [p["score"] for p in out["predictions"]] == pytest.approx(scores, abs=1e-5)

    # Instances as objects, an explicit signature and version.
    body = {
        "signature_name": SERVING_SIGNATURE,
        "instances": [{"text": line} for line in INPUTS[:3]],
    }
    status, out = call(server.url("/v1/models/nmt/versions/1:predict"), body)
    assert status == 200, out
    assert [p["translation"] for p in out["predictions"]] == texts[:3]
    assert set(out["predictions"][0]) == {"translation", "score"}


def test_predict_columnar_format(server, expected):
    texts, scores = expected
    for body in ({"inputs": {"text": INPUTS}}, {"inputs": INPUTS}):
        status, out = call(server.url("/v1/models/nmt:predict"), body)
        assert status == 200, out
        assert out["outputs"]["translation"] == texts
        assert out["outputs"]["score"] == pytest.approx(scores, abs=1e-5)
    status, out = call(server.url("/v1/models/nmt:predict"), {"instances": []})
    assert (status, out) == (200, {"predictions": []})


def test_predict_ids_signature(server, expected, tiny):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(
        model_file=str(tiny.version_dir / "assets.extra" / "joint.model")
    )
    lines = INPUTS[:4]
    pieces = [sp.encode(line) for line in lines]
    width = max(len(p) for p in pieces)
    rows = [p + [0] * (width - len(p)) for p in pieces]
    lengths = [len(p) for p in pieces]
    body = {
        "signature_name": IDS_SIGNATURE,
        "inputs": {"source_ids": rows, "source_lengths": lengths},
    }
    status, out = call(server.url("/v1/models/nmt:predict"), body)
    assert status == 200, out
    outputs = out["outputs"]
    decoded = [
        sp.decode(ids[:n])
        for ids, n in zip(outputs["target_ids"], outputs["target_lengths"], strict=True)
    ]
    assert decoded == expected[0][:4]
    assert outputs["score"] == pytest.approx(expected[1][:4], abs=1e-5)

    body = {
        "signature_name": IDS_SIGNATURE,
        "instances": [
            {"source_ids": r, "source_lengths": n} for r, n in zip(rows, lengths, strict=True)
        ],
    }
    status, out = call(server.url("/v1/models/nmt:predict"), body)
    assert status == 200, out
    assert [p["target_lengths"] for p in out["predictions"]] == outputs["target_lengths"]


def test_status_and_metadata(server):
    status, out = call(server.url("/v1/models/nmt"))
    assert status == 200
    assert out == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert call(server.url("/v1/models/nmt/versions/1")) == (200, out)
    status, meta = call(server.url("/v1/models/nmt/metadata"))
    assert status == 200
    assert meta["model_spec"] == {"name": "nmt", "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert set(defs) >= {SERVING_SIGNATURE, IDS_SIGNATURE}
    assert defs[SERVING_SIGNATURE]["inputs"]["text"]["dtype"] == "DT_STRING"
    assert set(defs[SERVING_SIGNATURE]["outputs"]) == {"translation", "score"}
    assert defs[IDS_SIGNATURE]["method_name"] == "tensorflow/serving/predict"


# === Errors ===


def test_errors_in_tf_serving_format(server, expected):
    predict = server.url("/v1/models/nmt:predict")
    cases = [
        (call(predict, raw=b"instances = [1, 2]", method="POST"), 400, "JSON Parse error"),
        (call(predict, raw=b"", method="POST"), 400, "JSON Parse error"),
        (call(predict, raw=b"[1, 2]", method="POST"), 400, "JSON object"),
        (call(predict, {"instances": ["a"], "inputs": ["a"]}), 400, "cannot be specified"),
        (call(predict, {"signature_name": SERVING_SIGNATURE}), 400, "Missing 'inputs'"),
        (call(predict, {"instances": [1, 2]}), 400, "expected a string"),
        (call(predict, {"instances": [["a"], ["b"]]}), 400, "rank 1"),
        (call(predict, {"instances": "a"}), 400, "must be a list"),
        (call(predict, {"instances": [{"txt": "a"}]}), 400, "expected the inputs ['text']"),
        (call(predict, {"signature_name": "nope", "instances": ["a"]}), 400, '"nope" not found'),
        (
            call(
                predict,
                {"signature_name": IDS_SIGNATURE, "inputs": {"source_ids": [[5, 6], [7]]}},
            ),
            400,
            "expected the inputs",
        ),
        (
            call(
                predict,
                {
                    "signature_name": IDS_SIGNATURE,
                    "inputs": {"source_ids": [[5, 6], [7]], "source_lengths": [2, 1]},
                },
            ),
            400,
            "different lengths",
        ),
        (
            call(
                predict,
                {
                    "signature_name": IDS_SIGNATURE,
                    "inputs": {"source_ids": [[5, 6]], "source_lengths": [3]},
                },
            ),
            400,
            "exceeds the width",
        ),
        (call(server.url("/v1/models/other:predict"), {"instances": ["a"]}), 404, "Latest(other)"),
        (
            call(server.url("/v1/models/nmt/versions/9:predict"), {"instances": ["a"]}),
            404,
            "Specific(nmt, 9)",
        ),
        (call(server.url("/v1/models/nmt/versions/x:predict"), {"instances": ["a"]}), 400, "x"),
        (call(server.url("/v1/models/other")), 404, "other"),
        (call(server.url("/v1/models/nmt/versions/9")), 404, "version 9"),
        (call(server.url("/v1/models/nmt:predict")), 400, "Malformed request"),
        (call(server.url("/v1/models/nmt:classify"), {"examples": []}), 400, "not supported"),
        (call(server.url("/v2/whatever")), 404, "Not found"),
    ]
    for (status, out), want_status, fragment in cases:
        assert status == want_status, (out, fragment)
        assert set(out) == {"error"} and fragment in out["error"], (out, fragment)
    # The server survived every one of them.
    status, out = call(predict, {"instances": INPUTS[:1]})
    assert status == 200 and out["predictions"][0]["translation"] == expected[0][0]


def test_body_over_limit_gets_413(tiny, expected):
    running = Running(tiny.export_base, max_request_bytes=200, warm_up=False)
    try:
        predict = running.url("/v1/models/nmt:predict")
        status, out = call(predict, {"instances": ["x" * 300]})
        assert status == 413 and "exceeds the limit of 200 bytes" in out["error"]
        status, out = call(predict, {"instances": INPUTS[:1]})
        assert status == 200 and out["predictions"][0]["translation"] == expected[0][0]
    finally:
        running.close()


def test_malformed_requests_interleaved_with_concurrent_clients(server, expected):
    texts, _ = expected
    predict = server.url("/v1/models/nmt:predict")

    def client(i: int) -> list[tuple[int, object]]:
        results = []
        for j in range(4):
            k = (i + j) % len(INPUTS)
            if (i + j) % 3 == 0:
                results.append(("bad", call(predict, raw=b"{not json", method="POST")[0]))
            results.append((k, call(predict, {"instances": [INPUTS[k]]})))
        return results

    with ThreadPoolExecutor(8) as pool:
        outcomes = [r for rs in pool.map(client, range(8)) for r in rs]
    good = [(k, r) for k, r in outcomes if k != "bad"]
    bad = [r for k, r in outcomes if k == "bad"]
    assert len(good) == 32 and bad and all(code == 400 for code in bad)
    for k, (status, out) in good:
        assert status == 200, out
        assert out["predictions"][0]["translation"] == texts[k]


# === Batching ===


def test_batcher_groups_concurrent_requests():
    import numpy as np

    from nmt.serve import Batcher

    calls = []

    def fn(texts):
        calls.append(len(texts))
        return {"echo": np.array(texts, dtype=object), "n": np.arange(len(texts))}

    batcher = Batcher(fn, max_batch_size=16, timeout_s=1.0)
    barrier = threading.Barrier(8)

    def submit(i):
        barrier.wait()
        return batcher.submit([f"{i}-a".encode(), f"{i}-b".encode()])

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(submit, range(8)))
    finally:
        batcher.close()
    for i, out in enumerate(results):
        assert out["echo"].tolist() == [f"{i}-a".encode(), f"{i}-b".encode()]
    assert sum(calls) == 16 and batcher.requests == 8 and batcher.strings == 16
    assert batcher.runs == len(calls) < 8  # requests that arrived together shared runs
    assert all(n % 2 == 0 for n in calls)  # a request (2 strings) is never split


def test_batcher_respects_max_batch_size_and_reports_errors():
    from nmt.serve import Batcher

    def fn(texts):
        if b"boom" in texts:
            raise ValueError("boom inside the model")
        return {"n": [len(texts)] * len(texts)}

    batcher = Batcher(fn, max_batch_size=3, timeout_s=0.5)
    try:
        with ThreadPoolExecutor(6) as pool:
            sizes = list(pool.map(lambda i: batcher.submit([b"x", b"y"])["n"][0], range(6)))
        assert all(size <= 3 for size in sizes)  # two 2-string requests never share a run
        assert batcher.submit([b"a", b"b", b"c", b"d"])["n"] == [4] * 4  # a large one runs alone
        with pytest.raises(ValueError, match="boom inside"):
            batcher.submit([b"boom"])
        assert batcher.submit([b"ok"])["n"] == [1]
    finally:
        batcher.close()


def test_http_requests_that_arrive_together_share_model_runs(tiny, expected):
    running = Running(tiny.export_base, batch_timeout_ms=500.0, max_batch_size=64)
    try:
        predict = running.url("/v1/models/nmt:predict")
        barrier = threading.Barrier(8)

        def client(i):
            barrier.wait()
            return call(predict, {"instances": [INPUTS[i]]})

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(client, range(8)))
        for i, (status, out) in enumerate(results):
            assert status == 200, out
            assert out["predictions"][0]["translation"] == expected[0][i]
        batcher = running.app.versions[1].batcher
        assert batcher.requests == 8
        assert batcher.runs < 8
        status, metrics = call(running.url("/monitoring/prometheus/metrics"))
        assert status == 200
        assert f'nmt_model_runs_total{{model="nmt",version="1"}} {batcher.runs}' in metrics
        assert 'nmt_predict_requests_total{model="nmt",version="1"} 8' in metrics
    finally:
        running.close()


# === Versions ===


def test_latest_version_served_and_all_versions_option(tiny, tmp_path, expected):
    import shutil

    base = tmp_path / "export"
    base.mkdir()
    shutil.copytree(tiny.version_dir, base / "1")
    shutil.copytree(tiny.version_dir, base / "3")
    (base / ".nmt-export-4-partial").mkdir()  # an unfinished export is not a version
    running = Running(base, warm_up=False)
    try:
        status, out = call(running.url("/v1/models/nmt"))
        states = {s["version"]: s["state"] for s in out["model_version_status"]}
        assert states == {"3": "AVAILABLE", "1": "END"}
        status, meta = call(running.url("/v1/models/nmt/metadata"))
        assert meta["model_spec"]["version"] == "3"
        assert (
            call(running.url("/v1/models/nmt/versions/1:predict"), {"instances": ["a"]})[0] == 404
        )
    finally:
        running.close()
    running = Running(base, all_versions=True, warm_up=False)
    try:
        for version in ("1", "3"):
            url = running.url(f"/v1/models/nmt/versions/{version}:predict")
            status, out = call(url, {"instances": INPUTS[:2]})
            assert status == 200
            assert [p["translation"] for p in out["predictions"]] == expected[0][:2]
    finally:
        running.close()


def _stage_version(source: Path, base: Path, version: int) -> Path:
    """Copy a version directory into BASE/N the way `nmt export` does: built in a hidden
    directory beside it, then renamed into place."""
    import shutil

    staged = base / f".nmt-export-{version}-staging"
    shutil.copytree(source, staged)
    os.rename(staged, base / str(version))
    return base / str(version)


def _states(running, name="nmt") -> dict[str, str]:
    status, out = call(running.url(f"/v1/models/{name}"))
    assert status == 200, out
    return {s["version"]: s["state"] for s in out["model_version_status"]}


def test_new_version_replaces_the_old_one_once_idle(tiny, tmp_path, expected):
    """Polling by hand (poll_seconds=0, `refresh()`): a new version loads once its files
    are unchanged between two polls, takes the requests, and the old one is unloaded when
    the request that holds it ends; a broken version is reported and tried again when its
    files change."""
    import shutil

    base = tmp_path / "export"
    base.mkdir()
    shutil.copytree(tiny.version_dir, base / "1")
    events: list[str] = []
    running = Running(base, poll_seconds=0, warm_up=False, log=events.append)
    app = running.app
    try:
        _stage_version(tiny.version_dir, base, 2)
        with app.serving("nmt") as held:  # a request in flight on version 1
            assert held.version == 1
            app.refresh()
            assert sorted(app.versions) == [1]  # first sight: not loaded yet
            app.refresh()
            assert sorted(app.versions) == [2]
            assert _states(running) == {"2": "AVAILABLE", "1": "UNLOADING"}
            assert not held.closed
            assert (
                call(running.url("/v1/models/nmt/versions/1:predict"), {"instances": ["a"]})[0]
                == 404
            )
        app.refresh()
        assert held.closed and not held.batcher._thread.is_alive()
        assert _states(running) == {"2": "AVAILABLE", "1": "END"}
        status, meta = call(running.url("/v1/models/nmt/metadata"))
        assert meta["model_spec"]["version"] == "2"
        status, out = call(running.url("/v1/models/nmt:predict"), {"instances": INPUTS})
        assert [p["translation"] for p in out["predictions"]] == expected[0]

        # Version 3 without its variables: it fails, version 2 keeps serving.
        broken = base / "3"
        broken.mkdir()
        shutil.copyfile(tiny.version_dir / "saved_model.pb", broken / "saved_model.pb")
        app.refresh()
        app.refresh()
        status, out = call(running.url("/v1/models/nmt/versions/3"))
        (entry,) = out["model_version_status"]
        assert entry["state"] == "END" and entry["status"]["error_code"] == "UNKNOWN"
        assert "cannot load the export" in entry["status"]["error_message"]
        app.refresh()  # unchanged: not tried again
        assert sum("version 3 not loaded" in e for e in events) == 1
        assert sorted(app.versions) == [2]
        # Completed: its files changed, so it is tried again once they settle.
        shutil.copytree(tiny.version_dir / "variables", broken / "variables")
        shutil.copytree(tiny.version_dir / "assets.extra", broken / "assets.extra")
        if (tiny.version_dir / "assets").is_dir():
            shutil.copytree(tiny.version_dir / "assets", broken / "assets")
        app.refresh()
        app.refresh()
        assert sorted(app.versions) == [3]
        assert _states(running) == {"3": "AVAILABLE", "2": "END", "1": "END"}
        assert any("unloaded version 2" in e for e in events)
    finally:
        running.close()


def test_polling_serves_a_new_export_under_its_model_name(tiny, tmp_path, expected):
    """`--model-name` and `--poll-seconds` together, with the poller's own thread."""
    import shutil
    import time

    base = tmp_path / "export"
    base.mkdir()
    shutil.copytree(tiny.version_dir, base / "1")
    running = Running(base, model_name="en-de", poll_seconds=0.1, warm_up=False, log=None)
    try:
        assert _states(running, "en-de") == {"1": "AVAILABLE"}
        assert call(running.url("/v1/models/nmt"))[0] == 404
        _stage_version(tiny.version_dir, base, 2)
        deadline = time.monotonic() + 60
        while _states(running, "en-de") != {"2": "AVAILABLE", "1": "END"}:
            assert time.monotonic() < deadline, _states(running, "en-de")
            time.sleep(0.05)
        status, meta = call(running.url("/v1/models/en-de/metadata"))
        assert meta["model_spec"] == {"name": "en-de", "signature_name": "", "version": "2"}
        url = running.url("/v1/models/en-de/versions/2:predict")
        status, out = call(url, {"instances": INPUTS[:3]})
        assert status == 200, out
        assert [p["translation"] for p in out["predictions"]] == expected[0][:3]
        status, out = call(running.url("/v1/models/en-de/versions/1:predict"), {"inputs": ["a"]})
        assert status == 404 and "Specific(en-de, 1)" in out["error"]
        status, out = call(running.url("/v1/models/nmt:predict"), {"instances": ["a"]})
        assert status == 404 and "Latest(nmt)" in out["error"]
    finally:
        running.close()


def test_page_is_served_self_contained(server):
    for path in ("/", "/index.html"):
        request = urllib.request.Request(server.url(path))
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
            assert response.headers.get_content_type() == "text/html"
            page = response.read().decode("utf-8")
        assert '<meta name="nmt-model" content="nmt">' in page
        assert "<textarea" in page and "<canvas" in page and ":predict" in page
        # Nothing from elsewhere: no external script, style, font or image.
        assert "http://" not in page and "https://" not in page and "//cdn" not in page
        assert "<script src" not in page and "<link" not in page
    assert call(server.url("/"), {"instances": []})[0] == 404  # POST / is no API call


def test_server_refuses_a_bad_model_name_without_naming_a_flag(tiny):
    from nmt.serve import ModelServer

    with pytest.raises(ValueError, match=r"^model name 'a b': use letters"):
        ModelServer(tiny.export_base, "a b")


def test_server_refuses_bad_export_dirs(tiny, tmp_path):
    from nmt.errors import NmtError
    from nmt.serve import ModelServer

    with pytest.raises(NmtError, match="export directory not found"):
        ModelServer(tmp_path / "missing")
    with pytest.raises(NmtError, match="no exported versions"):
        ModelServer(tmp_path)
    with pytest.raises(NmtError, match="is a version directory; pass its parent"):
        ModelServer(tiny.version_dir)


# === The `nmt serve` process and the client script ===


def _start_cli_server(export_base: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    nmt = Path(sys.executable).parent / "nmt"
    command = [str(nmt)] if nmt.exists() else [sys.executable, "-m", "nmt"]
    proc = subprocess.Popen(
        command + ["serve", "--export-dir", str(export_base), "--port", "0", "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    line = proc.stdout.readline()
    if "serving model" not in line:
        proc.kill()
        raise AssertionError(f"nmt serve did not start: {line!r} {proc.stderr.read()[-3000:]}")
    return proc, line.rsplit(" at ", 1)[1].strip()


def test_cli_serve_client_script_and_sigterm(tiny, expected, tmp_path):
    proc, model_url = _start_cli_server(tiny.export_base, "--model-name", "demo")
    try:
        assert model_url.startswith(f"http://{HOST}:") and model_url.endswith("/v1/models/demo")
        status, out = call(model_url)
        assert status == 200 and out["model_version_status"][0]["state"] == "AVAILABLE"

        port = model_url.split(":")[2].split("/")[0]
        source = tmp_path / "in.txt"
        source.write_text("\n".join(INPUTS) + "\n", encoding="utf-8")
        client = subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "serving_client.py"),
                "--port",
                port,
                "--model-name",
                "demo",
                "--batch-size",
                "4",
                "--with-scores",
                str(source),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert client.returncode == 0, client.stderr
        lines = client.stdout.split("\n")[:-1]
        assert [line.rsplit(" ||| ", 1)[0] for line in lines] == expected[0]
        scores = [float(line.rsplit(" ||| ", 1)[1]) for line in lines]
        assert scores == pytest.approx(expected[1], abs=1e-5)

        bad = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "serving_client.py"), "--port", port, "-"],
            input="a\n",
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert bad.returncode == 1
        assert "HTTP 404" in bad.stderr and "Latest(nmt)" in bad.stderr

        # An idle kept-alive connection must not hold up the shutdown.
        idle = http.client.HTTPConnection(HOST, int(port), timeout=60)
        idle.request("GET", "/v1/models/demo")
        assert idle.getresponse().read()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        assert code == 0, proc.stderr.read()[-3000:]
        assert "nmt serve: stopped" in proc.stderr.read()
        idle.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_serve_errors(tmp_path):
    from click.testing import CliRunner

    from nmt.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--export-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert result.output.strip() == f"nmt: error: {tmp_path / 'none'}: export directory not found"
