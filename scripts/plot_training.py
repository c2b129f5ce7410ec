"""Dev BLEU over training wall time: a Markdown table and a PNG plot.

Two sources, one result (a list of evaluations with cumulative wall seconds):

* a model directory: `train_state.json` lists every evaluation with `train_seconds`, the
  cumulative wall time of the training loop over all `nmt train` runs of that directory
  (validation included; recorded since the CHANGELOG's `train_seconds` entry);
* the console logs of consecutive `nmt train` runs of one model directory, in order (for
  directories trained before `train_seconds` existed). An `eval step N` line takes the
  `elapsed` of the `step N/...` line printed just before it; each further log adds the last
  `elapsed` of the previous one, so a resumed run continues the time axis.

Usage:
    python scripts/plot_training.py --model DIR [--png OUT.png] [--title TEXT]
    python scripts/plot_training.py --log run1.log --log run2.log [--png OUT.png]

Prints the table (time, step, dev loss, BLEU, best so far) on stdout.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

STEP_LINE = re.compile(r"^step (\d+)/\d+ .* elapsed (\d+):(\d\d):(\d\d)")
EVAL_LINE = re.compile(r"^eval step (\d+): dev loss ([0-9.]+|nan|inf) ppl \S+(?: bleu ([0-9.]+))?")


@dataclass
class Evaluation:
    step: int
    seconds: float  # cumulative training wall time at the evaluation
    dev_loss: float
    bleu: float | None


def from_model_dir(model_dir: Path) -> list[Evaluation]:
    path = model_dir / "train_state.json"
    if not path.exists():
        raise SystemExit(f"plot_training: {path}: no train_state.json (is it a model directory?)")
    state = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for entry in state.get("evaluations", []):
        if "train_seconds" not in entry:
            raise SystemExit(
                f"plot_training: {path}: evaluation at step {entry.get('step')} has no "
                "train_seconds (written by an older nmt); use --log with the console logs"
            )
        found.append(
            Evaluation(entry["step"], entry["train_seconds"], entry["dev_loss"], entry.get("bleu"))
        )
    return found


def from_logs(logs: list[Path]) -> list[Evaluation]:
    found: list[Evaluation] = []
    offset = 0.0
    for log in logs:
        elapsed_at: dict[int, float] = {}
        last = 0.0
        for number, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
            if m := STEP_LINE.match(line):
                h, mi, se = int(m[2]), int(m[3]), int(m[4])
                last = h * 3600 + mi * 60 + se
                elapsed_at[int(m[1])] = last
            elif m := EVAL_LINE.match(line):
                step = int(m[1])
                if step not in elapsed_at:
                    raise SystemExit(
                        f"plot_training: {log}:{number}: eval at step {step} has no step line "
                        "before it (train.eval_every must be a multiple of train.log_every)"
                    )
                bleu = float(m[3]) if m[3] is not None else None
                found.append(Evaluation(step, offset + elapsed_at[step], float(m[2]), bleu))
        offset += last
    return found


def table(evaluations: list[Evaluation]) -> str:
    rows = ["| wall time | step | dev loss | dev BLEU | best so far |", "|---|---|---|---|---|"]
    best = None
    for e in evaluations:
        if e.bleu is not None and (best is None or e.bleu > best):
            best = e.bleu
        minutes = f"{int(e.seconds // 60)}:{int(e.seconds % 60):02d}"
        bleu = f"{e.bleu:.2f}" if e.bleu is not None else "-"
        best_text = f"{best:.2f}" if best is not None else "-"
        rows.append(f"| {minutes} | {e.step} | {e.dev_loss:.3f} | {bleu} | {best_text} |")
    return "\n".join(rows)


def plot(evaluations: list[Evaluation], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(e.seconds / 60, e.bleu) for e in evaluations if e.bleu is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
    ax.set_xlabel("training wall time (minutes, validation included)")
    ax.set_ylabel("dev BLEU (greedy, sacreBLEU)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="model directory (train_state.json)")
    source.add_argument("--log", type=Path, action="append", help="console log, in run order")
    parser.add_argument("--png", type=Path, help="write the plot here")
    parser.add_argument("--title", default="dev BLEU over training time")
    args = parser.parse_args(argv)
    evaluations = from_model_dir(args.model) if args.model else from_logs(args.log)
    if not evaluations:
        print("plot_training: no evaluations found", file=sys.stderr)
        return 1
    print(table(evaluations))
    if args.png:
        plot(evaluations, args.png, args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
