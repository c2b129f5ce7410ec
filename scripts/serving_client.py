#!/usr/bin/env python3
"""Translate lines through a TF Serving REST endpoint (`nmt serve` or tensorflow/serving).

    python scripts/serving_client.py [--host H] [--port P] [--model-name NAME] [FILE|-]

Reads UTF-8 lines from FILE (or stdin), posts them in batches to
http://HOST:PORT/v1/models/NAME[/versions/N]:predict in TF Serving's row format

    {"signature_name": "serving_default", "instances": ["line 1", "line 2", ...]}

and prints one translation per input line (`translation ||| score` with --with-scores).
Standard library only (urllib), so it runs anywhere Python 3.8+ does. Exits 1 with the
server's error message on an HTTP error, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request


def predict(url: str, lines: list[str], signature: str, timeout: float) -> list[dict]:
    body = json.dumps({"signature_name": signature, "instances": lines}).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result = json.loads(response.read().decode("utf-8"))
    predictions = result.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(lines):
        raise ValueError(f"unexpected response: {json.dumps(result)[:200]}")
    return predictions


def read_lines(path: str):
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        for number, raw in enumerate(stream, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{number}: invalid UTF-8 at byte {e.start}") from None
            yield text.rstrip("\n").rstrip("\r")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", nargs="?", default="-", help="input file, - for stdin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501, help="REST port (8501)")
    parser.add_argument("--model-name", default="nmt")
    parser.add_argument("--version", type=int, help="a specific model version")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--batch-size", type=int, default=32, help="lines per request")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    parser.add_argument("--with-scores", action="store_true", help="append ' ||| score'")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be positive")

    path = f"/v1/models/{args.model_name}"
    if args.version is not None:
        path += f"/versions/{args.version}"
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}{path}:predict"

    out = sys.stdout
    batch: list[str] = []

    def flush() -> None:
        for p in predict(url, batch, args.signature, args.timeout):
            text = p["translation"].replace("\r", " ").replace("\n", " ")
            out.write(f"{text} ||| {p['score']:.6f}\n" if args.with_scores else text + "\n")
        out.flush()
        batch.clear()

    try:
        for line in read_lines(args.input):
            batch.append(line)
            if len(batch) >= args.batch_size:
                flush()
        if batch:
            flush()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", errors="replace")
        try:
            detail = json.loads(detail)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        print(f"serving_client: error: HTTP {e.code} from {url}: {detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        print(f"serving_client: error: {url}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
