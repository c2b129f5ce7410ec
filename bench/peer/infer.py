"""Inference runs of the peer: `onmt-main ... infer` on a file of pieces."""

from __future__ import annotations

import re
from pathlib import Path

from bench.peer.base import (
    ONMT_DEFAULT_LENGTH_PENALTY,
    ONMT_DEFAULT_MAX_DECODING_LENGTH,
    PEER_VENV,
    PeerData,
    PeerError,
    PeerInferRun,
    _onmt_main,
)
from bench.peer.config import write_peer_config
from bench.peer.runner import _base_command, _count_lines, _run, _tail
from bench.peer.train import checkpoint_step, parse_effective_config

PREDICTION_TIME = re.compile(r"Total prediction time \(s\): ([\d.]+)")


def infer_peer(
    data: PeerData,
    model_dir: Path,
    src_pieces: Path,
    out_pieces: Path,
    *,
    beam: int,
    onmt_main: Path | None = None,
    batch_size: int | None = None,
    max_decoding_length: int | None = None,
    min_decoding_length: int | None = None,
) -> PeerInferRun:
    """Translate `src_pieces` with the latest checkpoint of `model_dir` into `out_pieces`.

    `max_decoding_length`: when given, `params.maximum_decoding_length` of this run, written
    into its config file (`infer_beam{beam}_max{N}.yml`): the decoder runs at most N steps, so
    an output has at most N pieces besides `</s>` (OpenNMT-tf's default N is 250).
    `min_decoding_length`: when given, `params.minimum_decoding_length` (OpenNMT-tf gives
    `</s>` a -inf logit before that step; default 0); with both equal to N every output has
    exactly N pieces (config file `infer_beam{beam}_min{N}_max{N}.yml`).
    """
    model_dir, src_pieces, out_pieces = Path(model_dir), Path(src_pieces), Path(out_pieces)
    onmt_main = Path(onmt_main) if onmt_main else _onmt_main(PEER_VENV)
    step = _infer_step(model_dir, src_pieces, max_decoding_length, min_decoding_length)
    extra, filename = _infer_overrides(beam, batch_size, max_decoding_length, min_decoding_length)
    config = write_peer_config(
        data, model_dir, max_step=step, beam_width=beam, extra=extra, filename=filename
    )
    out_pieces.parent.mkdir(parents=True, exist_ok=True)
    partial = out_pieces.with_name(f".{out_pieces.name}.partial")
    command = _infer_command(onmt_main, config, src_pieces, partial)
    log_path = out_pieces.with_name(out_pieces.name + ".log")
    measured = _run_infer(command, log_path, src_pieces, partial, out_pieces)
    requested = {
        "beam_width": beam,
        "max_decoding_length": ONMT_DEFAULT_MAX_DECODING_LENGTH
        if max_decoding_length is None
        else max_decoding_length,
        "min_decoding_length": 0 if min_decoding_length is None else min_decoding_length,
        "length_penalty": ONMT_DEFAULT_LENGTH_PENALTY,
        "batch_size": batch_size,
    }
    text = log_path.read_text(encoding="utf-8", errors="replace")
    return PeerInferRun(
        **measured,
        mean_pieces=_mean_pieces(out_pieces, measured["lines"]),
        step=step,
        predictions=out_pieces,
        log_path=log_path,
        config_path=config,
        command=command,
        **_logged_settings(requested, text),
    )


def _infer_step(
    model_dir: Path, src_pieces: Path, max_length: int | None, min_length: int | None
) -> int:
    """The checkpoint step to translate with, after checking the limits and the source file."""
    if max_length is not None and max_length < 1:
        raise PeerError(f"max_decoding_length must be at least 1, got {max_length}")
    if min_length is not None and min_length < 0:
        raise PeerError(f"min_decoding_length must be >= 0, got {min_length}")
    step = checkpoint_step(model_dir)
    if step == 0:
        raise PeerError(f"{model_dir}: no OpenNMT-tf checkpoint to translate with")
    if not src_pieces.is_file():
        raise PeerError(f"{src_pieces}: file not found")
    return step


def _infer_overrides(
    beam: int, batch_size: int | None, max_length: int | None, min_length: int | None
) -> tuple[dict | None, str]:
    """(config entries over auto_config's, config file name) of an infer run."""
    extra: dict = {}
    if batch_size:
        extra["infer"] = {"batch_size": batch_size}
    limits: dict = {}
    name = f"infer_beam{beam}"
    if min_length is not None:
        limits["minimum_decoding_length"] = int(min_length)
        name += f"_min{int(min_length)}"
    if max_length is not None:
        limits["maximum_decoding_length"] = int(max_length)
        name += f"_max{int(max_length)}"
    if limits:
        extra["params"] = limits
    return extra or None, f"{name}.yml"


def _infer_command(onmt_main: Path, config: Path, src_pieces: Path, partial: Path) -> list[str]:
    return [
        *_base_command(onmt_main, [config]),
        "infer",
        "--features_file",
        str(src_pieces),
        "--predictions_file",
        str(partial),
        "--log_prediction_time",
    ]


def _run_infer(
    command: list[str], log_path: Path, src_pieces: Path, partial: Path, out_pieces: Path
) -> dict:
    """Run `command`, check it wrote one line per source line into `partial`, then move that
    to `out_pieces`: wall and CPU seconds, peak RSS bytes and lines, by PeerInferRun's names.
    No partial file is left behind."""
    wall, cpu, rss, status = _run(command, log_path)
    if status != 0:
        partial.unlink(missing_ok=True)
        raise PeerError(
            f"onmt-main infer exited with status {status}; last lines of {log_path}:\n"
            + _tail(log_path)
        )
    expected, got = _count_lines(src_pieces), _count_lines(partial)
    if got != expected:
        partial.unlink(missing_ok=True)
        raise PeerError(f"onmt-main infer wrote {got} lines for the {expected} of {src_pieces}")
    partial.replace(out_pieces)
    return {"wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_bytes": rss, "lines": got}


def _mean_pieces(predictions: Path, lines: int) -> float:
    with predictions.open(encoding="utf-8") as f:
        pieces = sum(len(line.split()) for line in f)
    return pieces / lines if lines else 0.0


def _logged_settings(requested: dict, text: str) -> dict:
    """The decoding settings of a run by PeerInferRun's names: what OpenNMT-tf logged (`Using
    parameters:`, also kept whole) over the `requested` ones, and its own prediction time."""
    effective = parse_effective_config(text)
    params = (effective or {}).get("params", {})
    infer = (effective or {}).get("infer", {})
    timed = PREDICTION_TIME.search(text)
    return {
        "prediction_seconds": float(timed[1]) if timed else None,
        "beam_width": int(params.get("beam_width", requested["beam_width"])),
        "max_decoding_length": int(
            params.get("maximum_decoding_length", requested["max_decoding_length"])
        ),
        "min_decoding_length": int(
            params.get("minimum_decoding_length", requested["min_decoding_length"])
        ),
        "length_penalty": float(params.get("length_penalty", requested["length_penalty"])),
        "batch_size": infer.get("batch_size", requested["batch_size"]),
        "effective_config": effective,
    }
