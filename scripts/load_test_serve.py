#!/usr/bin/env python3
"""Load-test `nmt serve` on this machine: N concurrent clients for a bounded time.

    python scripts/load_test_serve.py --export-dir EXPORT_BASE [--clients 8] [--duration 10]
    python scripts/load_test_serve.py --url http://127.0.0.1:8501/v1/models/nmt [...]

With --export-dir it starts `nmt serve --host 127.0.0.1` (a free port) and stops it
afterwards; with --url it drives a running server, which must be on a loopback address
(127.0.0.0/8 or ::1): this script never sends traffic anywhere else. Each client keeps one
HTTP connection and posts `{"instances": [...]}` requests of --strings strings (drawn from
--input lines, or built-in sentences) until --duration seconds or --max-requests requests in
total. Every answer is checked: HTTP 200 with one {"translation": string, "score": finite
number} per string sent. With --malformed-every K, every Kth request of a client is a
malformed one instead (bad JSON, wrong types, unknown signature or model, invalid ids,
...), which must get a 4xx answer {"error": "..."} while the good requests keep working.

Prints requests/s, strings/s, p50/p90/p99 latency of the good requests, the error count
(failed requests, wrong answers, malformed requests not refused properly) and, from the
server's /monitoring/prometheus/metrics, how many strings each model run took on average.
Exit status 1 when there was any error.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

MAX_DURATION = 600.0
MAX_REQUESTS = 1_000_000
SENTENCES = [
    "A dog runs across the green grass.",
    "Two men are talking in a small café.",
    "The child plays with a red ball near the river.",
    "A woman in a blue coat waits for the bus.",
    "Some people are sitting on a bench in the park.",
    "A man rides his bicycle down a busy street at night.",
    "Three girls laugh.",
    "An old man reads a newspaper while his dog sleeps beside him on the floor.",
]

# Requests a server must refuse with a 4xx {"error": ...}: (label, path suffix, body).
# "" is the model's :predict path; "other" posts to a model that does not exist.
MALFORMED: list[tuple[str, str, bytes]] = [
    ("invalid JSON", "", b"{not json"),
    ("empty body", "", b""),
    ("JSON array", "", b"[1, 2]"),
    ("invalid UTF-8", "", b'{"instances": ["\xff\xfe"]}'),
    ("nested too deeply", "", b"[" * 100_000),
    ("numbers for text", "", b'{"instances": [1, 2]}'),
    ("string for list", "", b'{"instances": "a dog"}'),
    ("wrong input name", "", b'{"inputs": {"txt": ["a dog"]}}'),
    ("rows and columns", "", b'{"instances": ["a"], "inputs": ["a"]}'),
    ("bad base64", "", b'{"instances": [{"b64": "!!!"}]}'),
    ("unknown signature", "", b'{"signature_name": "nope", "instances": ["a dog"]}'),
    (
        "length beyond ids",
        "",
        b'{"signature_name": "translate_ids", "inputs": '
        b'{"source_ids": [[5, 6]], "source_lengths": [3]}}',
    ),
    (
        "negative length",
        "",
        b'{"signature_name": "translate_ids", "inputs": '
        b'{"source_ids": [[5, 6]], "source_lengths": [-1]}}',
    ),
    (
        "id beyond vocabulary",
        "",
        b'{"signature_name": "translate_ids", "inputs": '
        b'{"source_ids": [[2000000000]], "source_lengths": [1]}}',
    ),
    ("unknown model", "other", b'{"instances": ["a dog"]}'),
]


def loopback_only(host: str) -> str:
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return host
    except ValueError:
        pass
    raise SystemExit(
        f"load_test_serve: refusing {host!r}: only loopback addresses (127.0.0.0/8, ::1)"
    )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def start_server(export_dir: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    nmt = Path(sys.executable).parent / "nmt"
    command = [str(nmt)] if nmt.exists() else [sys.executable, "-m", "nmt"]
    command += ["serve", "--export-dir", export_dir, "--port", "0", "--quiet", *extra]
    command += ["--host", "127.0.0.1"]  # last, so that it wins
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    line = proc.stdout.readline()
    if " at http://" not in line:
        proc.kill()
        proc.wait()
        raise SystemExit(f"load_test_serve: nmt serve did not start ({line.strip()!r})")
    url = line.rsplit(" at ", 1)[1].strip()
    loopback_only(urlsplit(url).hostname or "")
    return proc, url


def check_predictions(status: int, payload: bytes, strings: int) -> str | None:
    """None for a well-formed answer to `strings` strings, else what is wrong with it."""
    if status != 200:
        return f"HTTP {status}: {payload[:80]!r}"
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return f"HTTP 200 but not JSON: {payload[:80]!r}"
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or len(predictions) != strings:
        return f"HTTP 200 without {strings} predictions: {payload[:80]!r}"
    for p in predictions:
        if not (
            isinstance(p, dict)
            and set(p) == {"translation", "score"}
            and isinstance(p["translation"], str)
            and isinstance(p["score"], (int, float))
            and not isinstance(p["score"], bool)
            and math.isfinite(p["score"])
        ):
            return f"HTTP 200 with a malformed prediction: {json.dumps(p)[:80]}"
    return None


def check_refusal(status: int, payload: bytes) -> str | None:
    """None for a 4xx {"error": "..."} answer, else what is wrong with it."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if not 400 <= status < 500:
        return f"HTTP {status} (expected 4xx): {payload[:80]!r}"
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str)):
        return f"HTTP {status} without an error object: {payload[:80]!r}"
    return None


class Client(threading.Thread):
    def __init__(self, url, bodies, stop_at, budget, lock, malformed_every=0):
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.model_path = parts.path
        self.other_path = parts.path.rsplit("/", 1)[0] + "/other"
        self.bodies, self.stop_at, self.budget, self.lock = bodies, stop_at, budget, lock
        self.malformed_every = malformed_every
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.malformed_sent = 0
        self.malformed_refused = 0
        self.connection = None

    def _take(self) -> bool:
        with self.lock:
            if self.budget[0] <= 0:
                return False
            self.budget[0] -= 1
            return True

    def _error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1

    def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            self.connection.request(
                "POST", path, body, headers={"Content-Type": "application/json"}
            )
            response = self.connection.getresponse()
            return response.status, response.read()
        except BaseException:
            self.connection.close()
            self.connection = None
            raise

    def run(self):
        rng = random.Random(self.name)
        sent = 0
        try:
            while time.monotonic() < self.stop_at and self._take():
                sent += 1
                if self.malformed_every and sent % self.malformed_every == 0:
                    label, where, body = rng.choice(MALFORMED)
                    path = (self.other_path if where == "other" else self.model_path) + ":predict"
                    self.malformed_sent += 1
                    try:
                        status, payload = self._post(path, body)
                    except (OSError, http.client.HTTPException) as e:
                        self._error(f"malformed request ({label}): {type(e).__name__}")
                        continue
                    problem = check_refusal(status, payload)
                    if problem:
                        self._error(f"malformed request ({label}): {problem}")
                    else:
                        self.malformed_refused += 1
                    continue
                strings, body = rng.choice(self.bodies)
                start = time.perf_counter()
                try:
                    status, payload = self._post(self.model_path + ":predict", body)
                except (OSError, http.client.HTTPException) as e:
                    self._error(type(e).__name__)
                    continue
                problem = check_predictions(status, payload, strings)
                if problem:
                    self._error(problem)
                    continue
                self.latencies.append(time.perf_counter() - start)
        finally:
            if self.connection is not None:
                self.connection.close()


def server_metrics(url: str) -> dict[str, float]:
    parts = urlsplit(url)
    try:
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
        connection.request("GET", "/monitoring/prometheus/metrics")
        text = connection.getresponse().read().decode()
    except (OSError, http.client.HTTPException):
        return {}
    totals: dict[str, float] = {}
    for name, value in re.findall(r"^(nmt_\w+)(?:\{[^}]*\})? (\S+)$", text, re.M):
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--export-dir", help="start `nmt serve` on this export base")
    where.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8501/v1/models/nmt")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help=f"seconds (<= {MAX_DURATION})")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--strings", type=int, default=1, help="strings per request")
    parser.add_argument("--input", help="text file whose lines are sent (default: built-in)")
    parser.add_argument(
        "--malformed-every",
        type=int,
        default=0,
        metavar="K",
        help="make every Kth request of each client a malformed one (0: none)",
    )
    parser.add_argument("--serve-args", default="", help="extra `nmt serve` options")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str], list[str]]:
    """(arguments, the `nmt serve` options, the lines to send); bad ones exit 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 256:
        parser.error("--clients must be in 1..256")
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION}]")
    if not 1 <= args.max_requests <= MAX_REQUESTS:
        parser.error(f"--max-requests must be in 1..{MAX_REQUESTS}")
    if args.strings < 1:
        parser.error("--strings must be positive")
    if args.malformed_every < 0:
        parser.error("--malformed-every must be >= 0")
    serve_args = shlex.split(args.serve_args)
    if any(a == "--host" or a.startswith("--host=") for a in serve_args):
        parser.error("--serve-args: --host is not allowed (the server listens on 127.0.0.1)")
    lines = SENTENCES
    if args.input:
        lines = [x for x in Path(args.input).read_text(encoding="utf-8").splitlines() if x]
        if not lines:
            parser.error(f"{args.input}: no non-empty lines")
    return args, serve_args, lines


def request_bodies(lines: list[str], strings: int) -> list[tuple[int, bytes]]:
    """64 request bodies of `strings` lines each, drawn with a fixed seed."""
    rng = random.Random(13)
    return [
        (strings, json.dumps({"instances": [rng.choice(lines) for _ in range(strings)]}).encode())
        for _ in range(64)
    ]


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def drive(url: str, bodies: list, args) -> tuple[list[Client], float]:
    """Run the clients against `url` until the duration or the request budget is spent:
    (the clients, seconds elapsed)."""
    lock, budget = threading.Lock(), [args.max_requests]
    start = time.monotonic()
    clients = [
        Client(url, bodies, start + args.duration, budget, lock, args.malformed_every)
        for _ in range(args.clients)
    ]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    return clients, time.monotonic() - start


def load_test(args, serve_args: list[str], bodies: list) -> dict:
    """Start the server (with --export-dir) or check --url, drive it, stop what was started;
    the clients, time and the server's counters before and after."""
    proc = None
    if args.export_dir:
        proc, url = start_server(args.export_dir, serve_args)
    else:
        url = args.url.rstrip("/")
        loopback_only(urlsplit(url).hostname or "")
    try:
        before = server_metrics(url)
        clients, elapsed = drive(url, bodies, args)
        after = server_metrics(url)
    finally:
        if proc is not None:
            stop_server(proc)
    return {"url": url, "proc": proc, "clients": clients, "elapsed": elapsed,
            "before": before, "after": after}  # fmt: skip


def _delta(run: dict, name: str) -> float:
    return run["after"].get(name, 0) - run["before"].get(name, 0)


def build_report(args, run: dict) -> tuple[dict, dict[str, int]]:
    """(the report, {error kind: count}) of a `load_test` run."""
    clients, elapsed, proc = run["clients"], run["elapsed"], run["proc"]
    latencies = sorted(x for c in clients for x in c.latencies)
    errors: dict[str, int] = {}
    for c in clients:
        for key, n in c.errors.items():
            errors[key] = errors.get(key, 0) + n
    if not run["after"]:
        errors["server metrics unreachable after the run"] = 1
    runs = _delta(run, "nmt_model_runs_total")
    strings = _delta(run, "nmt_translated_strings_total")
    report = {
        "url": run["url"],
        "clients": args.clients,
        "strings_per_request": args.strings,
        "seconds": round(elapsed, 3),
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "malformed_sent": sum(c.malformed_sent for c in clients),
        "malformed_refused": sum(c.malformed_refused for c in clients),
        "requests_per_second": round(len(latencies) / elapsed, 2),
        "strings_per_second": round(len(latencies) * args.strings / elapsed, 2),
        "latency_ms": {
            q: round(1000 * percentile(latencies, float(q[1:])), 1) for q in ("p50", "p90", "p99")
        },
        "strings_per_model_run": round(strings / runs, 2) if runs else None,
        "server_exit_code": None if proc is None else proc.returncode,
    }
    return report, errors


def print_report(args, report: dict, errors: dict[str, int], elapsed: float) -> None:
    if args.json:
        print(json.dumps(report, indent=2))
        return
    lat = report["latency_ms"]
    malformed = ""
    if args.malformed_every:
        malformed = (
            f"; {report['malformed_refused']}/{report['malformed_sent']} malformed "
            "requests refused properly"
        )
    print(
        f"{report['requests']} requests ({report['errors']} errors) in {elapsed:.1f} s from "
        f"{args.clients} clients: {report['requests_per_second']} requests/s, "
        f"{report['strings_per_second']} strings/s; latency p50 {lat['p50']} ms, "
        f"p90 {lat['p90']} ms, p99 {lat['p99']} ms; "
        f"strings per model run {report['strings_per_model_run']}{malformed}"
    )
    for key, n in errors.items():
        print(f"  {n} x {key}")


def main(argv: list[str] | None = None) -> int:
    args, serve_args, lines = parse_args(argv)
    run = load_test(args, serve_args, request_bodies(lines, args.strings))
    report, errors = build_report(args, run)
    print_report(args, report, errors, run["elapsed"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
