"""The report of scripts/gpu_check.py: report.json (everything) and report.md (tables), and the
issue's targets checked from the measured figures. No TensorFlow here."""

from __future__ import annotations

import json
from pathlib import Path

from nmt.fileio import write_atomic

STATUS = {"ok": "ok", "failed": "FAILED", "timeout": "TIMED OUT", "skipped": "skipped"}


def _ratio(rows: list[dict], variant: str) -> float | None:
    return next((row["vs_keras"] for row in rows if row["variant"] == variant), None)


def targets(report: dict) -> list[dict]:
    """The issue's targets against this run's figures (met: True / False / None = not
    measured)."""
    out = []
    lstm = report["parts"].get("lstm", {}).get("result", {}).get("rows", [])
    for precision in ("float32", "mixed_float16"):
        rows = [r for r in lstm if r["precision"] == precision]
        ours = _ratio(rows, "nmt (cuDNN)") or _ratio(rows, "nmt")
        out.append({"target": f"LSTM train step, {precision}: ours / keras.layers.LSTM >= 0.9",
                    "value": ours, "met": None if ours is None else ours >= 0.9})  # fmt: skip
    train = report["parts"].get("train_4k", {}).get("result", {}).get("rows", [])
    speedup = None  # vs_first: the float32 step time over this variant's
    for row in train:
        if row["variant"] == "nmt:mixed_float16":
            speedup = row["vs_first"]
    out.append({"target": "training step at 4k tokens: mixed_float16 / float32 >= 1.5",
                "value": speedup, "met": None if speedup is None else speedup >= 1.5})  # fmt: skip
    return out


def write_report(out: Path, report: dict) -> None:
    write_atomic(out / "report.json", json.dumps(report, indent=1, default=str) + "\n", fsync=True)
    write_atomic(out / "report.md", markdown(report), fsync=True)


def _env_lines(env: dict) -> list[str]:
    result = env.get("result")
    if not result:
        return [f"Environment: {STATUS[env.get('status', 'skipped')]}", ""]
    gpus = result["gpus"]
    names = ", ".join(f"{g.get('device_name', g['name'])} (compute capability "
                      f"{g.get('compute_capability', '?')})" for g in gpus)  # fmt: skip
    return [
        f"- GPU(s) as TensorFlow sees them: {names or 'none'}",
        f"- nvidia-smi: {result.get('nvidia_smi') or 'not found'}",
        f"- TensorFlow {result['tensorflow']}, Keras {result['keras']}, Python "
        f"{result['python']}; build: {result['build']}",
        f"- CPU: {result['cpu']} ({result['cpus']} CPUs); `train.precision: auto` -> "
        f"{result['auto_precision']}; TensorFloat-32 matmuls: {result['tf32']}",
        "",
    ]


def _part_lines(name: str, part: dict) -> list[str]:
    status = STATUS[part.get("status", "skipped")]
    head = f"{status}" + (f" in {part['seconds']} s (limit {part['limit_s']} s)"
                          if "seconds" in part else "")  # fmt: skip
    if part.get("reason"):
        head += f": {part['reason']}"
    lines = [f"**{name}**: {head}", ""]
    if part.get("status") in ("failed", "timeout") and part.get("log_tail"):
        lines += ["```", *part["log_tail"][-12:], "```", ""]
    return lines


def _lstm_lines(result: dict) -> list[str]:
    shape = result["shape"]
    lines = [f"LSTM layer train step (forward, backward, Adam), batch {shape['batch']} x "
             f"{shape['steps']} steps, input {shape['input']}, {shape['units']} units; median "
             f"of {shape['timed']} alternated steps in one process:", "",
             "| precision | variant | ms / step | tokens/s | vs keras | max rel diff |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(f"| {r['precision']} | {r['variant']} | {r['ms']:.2f} | {r['tok_s']:,.0f} "
                     f"| {r['vs_keras']:.2f}x | {r['max_rel_diff']:.1e} |")  # fmt: skip
    return [*lines, "", *(f"- {n}" for n in result.get("notes", [])), ""]


def _train_lines(parts: dict) -> list[str]:
    rows = [(n, p["result"]) for n, p in parts.items() if n.startswith("train_") and
            p.get("result")]  # fmt: skip
    if not rows:
        return []
    lines = ["Full `nmt train` step (scripts/bench_train.py), variants alternating in one "
             "process per batch size:", "",
             "| batch tokens | variant | step s | target tok/s | src+tgt tok/s | vs float32 |",
             "|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for _, result in rows:
        for r in result["rows"]:
            lines.append(f"| {result['batch_tokens']} | {r['variant']} | {r['wall_s']:.3f} | "
                         f"{r['target_tok_s']:,.0f} | {r['all_tok_s']:,.0f} | "
                         f"{r['vs_first']:.2f}x |")  # fmt: skip
    return [*lines, ""]


def _decode_lines(result: dict) -> list[str]:
    lines = [f"Beam-5 decoding ({result['note']}; decode.batch_tokens "
             f"{result['batch_tokens']}):", "",
             "| precision | sentences | sentences/s | target tok/s | mean length | "
             "same as float32 |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(f"| {r['precision']} | {r['sentences']} | {r['sentences_s']:,.1f} | "
                     f"{r['target_tok_s']:,.0f} | {r['mean_length']:.1f} | "
                     f"{100 * r['same_as_float32']:.0f}% |")  # fmt: skip
    return [*lines, ""]


def markdown(report: dict) -> str:
    parts = report["parts"]
    mode = report.get("mode", "?")
    lines = ["# GPU check", "",
             f"Started {report['started']}, finished {report.get('finished', '(not yet)')}; "
             f"budget {report['budget_s']:.0f} s; commit {report['repo_commit']}; "
             f"Python {report['python']}; mode: **{mode}**"
             + (" (no GPU visible: CPU-only parts on tiny shapes, no GPU figures)"
                if mode == "cpu" else ""), ""]  # fmt: skip
    lines += _env_lines(parts.get("env", {}))
    if report.get("targets"):
        lines += ["## Targets", "", "| target | measured | met |", "|---|---:|---|"]
        for t in report["targets"]:
            met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
            value = "n/a" if t["value"] is None else f"{t['value']:.2f}x"
            lines.append(f"| {t['target']} | {value} | {met} |")
        lines.append("")
    lines += ["## Parts", ""]
    for name, part in parts.items():
        lines += _part_lines(name, part)
        result = part.get("result")
        if name == "tests" and result:
            lines += [f"{result['tests']} tests: {result['failures']} failed, "
                      f"{result['errors']} errors, {result['skipped']} skipped; "
                      f"`{part.get('summary', '')}`", ""]  # fmt: skip
            lines += [f"- failed: {t}" for t in result["failed_tests"]]
        elif name == "lstm" and result:
            lines += _lstm_lines(result)
        elif name == "decode" and result:
            lines += _decode_lines(result)
    return "\n".join([*lines, *_train_lines(parts)]) + "\n"
