#!/usr/bin/env python3
"""Load-test `nmt serve` on this machine: N concurrent clients for a bounded time.

    python scripts/load_test_serve.py --export-dir EXPORT_BASE [--clients 8] [--duration 10]
    python scripts/load_test_serve.py --url http://127.0.0.1:8501/v1/models/nmt [...]

With --export-dir it starts `nmt serve` on 127.0.0.1 (a free port) and stops it afterwards;
with --url it drives a running server, which must be on a loopback address (127.0.0.0/8,
localhost or ::1): this script never sends traffic anywhere else. Each client keeps one
HTTP connection and posts `{"instances": [...]}` requests of --strings strings (drawn from
--input lines, or built-in sentences) until --duration seconds or --max-requests requests in
total. Prints requests/s, strings/s, p50/p90/p99 latency, the error count and, from the
server's /monitoring/prometheus/metrics, how many strings each model run took on average.
Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import random
import re
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


def loopback_only(host: str) -> str:
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return host
    except ValueError:
        pass
    raise SystemExit(f"load_test_serve: refusing {host!r}: only loopback addresses are allowed")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def start_server(export_dir: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    nmt = Path(sys.executable).parent / "nmt"
    command = [str(nmt)] if nmt.exists() else [sys.executable, "-m", "nmt.cli"]
    command += ["serve", "--export-dir", export_dir, "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        command + ["--quiet", *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    line = proc.stdout.readline()
    if " at http://" not in line:
        proc.kill()
        raise SystemExit(f"load_test_serve: nmt serve did not start ({line.strip()!r})")
    return proc, line.rsplit(" at ", 1)[1].strip()


class Client(threading.Thread):
    def __init__(self, url, bodies, stop_at, budget, lock):
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path + ":predict"
        self.bodies, self.stop_at, self.budget, self.lock = bodies, stop_at, budget, lock
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def _take(self) -> bool:
        with self.lock:
            if self.budget[0] <= 0:
                return False
            self.budget[0] -= 1
            return True

    def run(self):
        rng = random.Random(self.name)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        while time.monotonic() < self.stop_at and self._take():
            body = rng.choice(self.bodies)
            start = time.perf_counter()
            try:
                connection.request(
                    "POST", self.path, body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    key = f"HTTP {response.status}: {payload[:80]!r}"
                    self.errors[key] = self.errors.get(key, 0) + 1
                    continue
            except (OSError, http.client.HTTPException) as e:
                key = type(e).__name__
                self.errors[key] = self.errors.get(key, 0) + 1
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
                continue
            self.latencies.append(time.perf_counter() - start)
        connection.close()


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--export-dir", help="start `nmt serve` on this export base")
    where.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8501/v1/models/nmt")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help=f"seconds (<= {MAX_DURATION})")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--strings", type=int, default=1, help="strings per request")
    parser.add_argument("--input", help="text file whose lines are sent (default: built-in)")
    parser.add_argument("--serve-args", default="", help="extra `nmt serve` options")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 256:
        parser.error("--clients must be in 1..256")
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION}]")
    if not 1 <= args.max_requests <= MAX_REQUESTS:
        parser.error(f"--max-requests must be in 1..{MAX_REQUESTS}")
    if args.strings < 1:
        parser.error("--strings must be positive")

    lines = SENTENCES
    if args.input:
        lines = [x for x in Path(args.input).read_text(encoding="utf-8").splitlines() if x]
        if not lines:
            parser.error(f"{args.input}: no non-empty lines")
    rng = random.Random(13)
    bodies = [
        json.dumps({"instances": [rng.choice(lines) for _ in range(args.strings)]})
        for _ in range(64)
    ]

    proc = None
    if args.export_dir:
        proc, url = start_server(args.export_dir, args.serve_args.split())
    else:
        url = args.url.rstrip("/")
        loopback_only(urlsplit(url).hostname or "")
    try:
        before = server_metrics(url)
        lock, budget = threading.Lock(), [args.max_requests]
        start = time.monotonic()
        clients = [
            Client(url, bodies, start + args.duration, budget, lock) for _ in range(args.clients)
        ]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        elapsed = time.monotonic() - start
        after = server_metrics(url)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    latencies = sorted(x for c in clients for x in c.latencies)
    errors: dict[str, int] = {}
    for c in clients:
        for key, n in c.errors.items():
            errors[key] = errors.get(key, 0) + n
    runs = after.get("nmt_model_runs_total", 0) - before.get("nmt_model_runs_total", 0)
    strings = after.get("nmt_translated_strings_total", 0) - before.get(
        "nmt_translated_strings_total", 0
    )
    report = {
        "url": url,
        "clients": args.clients,
        "strings_per_request": args.strings,
        "seconds": round(elapsed, 3),
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "requests_per_second": round(len(latencies) / elapsed, 2),
        "strings_per_second": round(len(latencies) * args.strings / elapsed, 2),
        "latency_ms": {
            q: round(1000 * percentile(latencies, float(q[1:])), 1) for q in ("p50", "p90", "p99")
        },
        "strings_per_model_run": round(strings / runs, 2) if runs else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lat = report["latency_ms"]
        print(
            f"{report['requests']} requests ({report['errors']} errors) in {elapsed:.1f} s from "
            f"{args.clients} clients: {report['requests_per_second']} requests/s, "
            f"{report['strings_per_second']} strings/s; latency p50 {lat['p50']} ms, "
            f"p90 {lat['p90']} ms, p99 {lat['p99']} ms; "
            f"strings per model run {report['strings_per_model_run']}"
        )
        for key, n in errors.items():
            print(f"  {n} x {key}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
