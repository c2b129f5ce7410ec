"""The command line of the peer harness (scripts/bench_peer.py): train, translate, score."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from bench.common import DEFAULT_DATA, DEFAULT_WORKDIR, SCRIPTS
from bench.peer.base import MODEL_TYPE, PEER_VENV, SEED, STEADY_SKIP, PeerError
from bench.peer.data import _split_pair, _write_lines_atomic, bleu, detokenize, prepare_peer_data
from bench.peer.infer import infer_peer
from bench.peer.train import train_peer
from bench.peer.venv import ensure_peer_venv, peer_versions

MIB = 1 << 20


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_spm(data_dir: Path, pair: str, cache: Path | None = None) -> Path:
    """The joint 8k SentencePiece model scripts/bench_train.py trains once and caches."""
    bench_train = _load_script("bench_train")
    src_lang, tgt_lang = _split_pair(pair)
    args = argparse.Namespace(batch_tokens=4096, jit=False, seed=SEED)
    config = bench_train.small_v1_config(
        args, data_dir / f"train.{src_lang}", data_dir / f"train.{tgt_lang}"
    )
    cache = cache or bench_train.DEFAULT_CACHE
    vocab = bench_train.vocabulary(config, cache / pair)
    return Path(vocab.source_model_path)


def _head(source: Path, out: Path, lines: int) -> Path:
    with source.open(encoding="utf-8") as f:
        head = [line.rstrip("\n") for _, line in zip(range(lines), f, strict=False)]
    _write_lines_atomic(out, head)
    return out


def parse_args(argv=None):
    from bench import peer

    parser = argparse.ArgumentParser(description=peer.__doc__.split("\n")[0])
    parser.add_argument("--pair", default="en-de", help="source-target languages")
    parser.add_argument("--steps", type=int, default=20, help="total training steps")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "peer")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    parser.add_argument("--spm", type=Path, help="SentencePiece model (default: bench_train's)")
    parser.add_argument("--vocab-cache", type=Path, help="bench_train's vocabulary cache")
    parser.add_argument("--infer-lines", type=int, help="translate only the first N test lines")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument(
        "--max-decoding-length",
        type=int,
        help="params.maximum_decoding_length of the infer run (OpenNMT-tf's default: 250)",
    )
    parser.add_argument(
        "--min-decoding-length",
        type=int,
        help="params.minimum_decoding_length of the infer run (OpenNMT-tf's default: 0)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="training batch (examples)")
    parser.add_argument("--venv", type=Path, default=PEER_VENV)
    return parser.parse_args(argv)


def _test_files(args, data) -> tuple[Path, Path]:
    """(source pieces, raw reference) of test2016, the first `--infer-lines` lines when given."""
    src, ref = data.test_src, data.test_ref
    if args.infer_lines:
        n = args.infer_lines
        src = _head(src, args.workdir / f"test2016.head{n}.sp", n)
        ref = _head(ref, args.workdir / f"test2016.head{n}.ref", n)
    return src, ref


def run_all(args) -> dict:
    """Venv, data, training, translation of test2016 and its BLEU: what `main` prints."""
    onmt_main = ensure_peer_venv(args.venv)
    versions = peer_versions(args.venv)
    spm_model = args.spm or default_spm(args.data, args.pair, args.vocab_cache)
    data = prepare_peer_data(args.data, args.pair, spm_model, args.workdir / "data" / args.pair)
    model_dir = args.workdir / f"{MODEL_TYPE}-{args.pair}"
    train = train_peer(data, model_dir, args.steps, batch_size=args.batch_size, onmt_main=onmt_main)
    src, ref = _test_files(args, data)
    out = model_dir / f"test2016.beam{args.beam}.step{train.final_step}.sp"
    infer = infer_peer(
        data,
        model_dir,
        src,
        out,
        beam=args.beam,
        onmt_main=onmt_main,
        max_decoding_length=args.max_decoding_length,
        min_decoding_length=args.min_decoding_length,
    )
    text = detokenize(out, data.spm_model, out.with_suffix(".txt"))
    return {"versions": versions, "train": train, "infer": infer, "text": text,
            "bleu": bleu(text, ref)}  # fmt: skip


def _fmt(value, spec=",.0f"):
    return "-" if value is None else format(value, spec)


def _setup_lines(versions: dict, train, infer) -> list[str]:
    """Versions, parameter count and the settings OpenNMT-tf ran with."""
    effective = train.effective_config or {}
    params, train_cfg = effective.get("params", {}), effective.get("train", {})
    return [
        f"OpenNMT-tf {versions.get('opennmt-tf')} (TF {versions.get('tensorflow')}, Python "
        f"{versions.get('python')}), {MODEL_TYPE} --auto_config, "
        f"{_fmt(train.num_params)} parameters; nmt side: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        f"optimizer {params.get('optimizer')} lr {params.get('learning_rate')}, batch "
        f"{train_cfg.get('batch_size')} {train_cfg.get('batch_type')}, max length "
        f"{train_cfg.get('maximum_features_length')}/{train_cfg.get('maximum_labels_length')}, "
        f"beam {infer.beam_width}, decoding length {infer.min_decoding_length}-"
        f"{infer.max_decoding_length}",
    ]


def _train_table(train) -> list[str]:
    return [
        "| run | steps | wall s | CPU s | peak RSS MiB | src words/s | tgt words/s | steps/s |",
        "|---|---|---|---|---|---|---|---|",
        f"| train {train.start_step}->{train.final_step} | {train.steps_run} | "
        f"{train.wall_seconds:.1f} | {train.cpu_seconds:.1f} | {train.peak_rss_bytes / MIB:,.0f} | "
        f"{_fmt(train.steady_source_words_per_sec)} | {_fmt(train.steady_target_words_per_sec)} | "
        f"{_fmt(train.steady_steps_per_sec, '.2f')} |",
    ]


def _infer_table(infer, score: float) -> list[str]:
    return [
        "| run | lines | wall s | CPU s | predict s | peak RSS MiB | pieces/line | BLEU |",
        "|---|---|---|---|---|---|---|---|",
        f"| infer beam {infer.beam_width} | {infer.lines} | {infer.wall_seconds:.1f} | "
        f"{infer.cpu_seconds:.1f} | {_fmt(infer.prediction_seconds, '.1f')} | "
        f"{infer.peak_rss_bytes / MIB:,.0f} | {infer.mean_pieces:.1f} | {score:.2f} |",
    ]


def report(result: dict) -> str:
    """The printed summary of `run_all`'s result."""
    train, infer = result["train"], result["infer"]
    lines = _setup_lines(result["versions"], train, infer)
    lines += ["", *_train_table(train), "", *_infer_table(infer, result["bleu"]), ""]
    lines.append(
        f"throughput reports: {len(train.reports)} (steady = median after the first {STEADY_SKIP})"
    )
    lines.append(
        f"train log: {train.log_path}\ninfer log: {infer.log_path}\nhypotheses: {result['text']}"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = run_all(args)
    except PeerError as e:
        print(f"bench_peer: error: {e}", file=sys.stderr)
        return 2
    print(report(result))
    return 0
