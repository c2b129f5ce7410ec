"""Section 3: decoding test2016, nmt vs OpenNMT-tf, and the recommended model."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from bench.common import (
    NMT_A,
    NMT_A_MATCHED,
    NOT_RUN,
    PEER_INFER_BATCH,
    PEER_NAME,
    SECTION_TITLES,
)
from bench.inputs import (
    finish_decode_row,
    limited_model_dir,
    matched_decode_batch_tokens,
    spm_processor,
    target_spm,
)
from bench.markdown import command_block, fmt, format_table, mib, shown_path, write_atomic
from bench.proc import nmt_cli
from bench.prose import fill

if TYPE_CHECKING:
    from bench.context import Benchmark


def head_file(ctx: Benchmark, source: Path, lines: int, dest: Path) -> Path:
    with open(source, encoding="utf-8") as f:
        text = "".join(line for _, line in zip(range(lines), f, strict=False))
    return write_atomic(dest, text)


def variants() -> dict[str, list[str]]:
    """The same-size model once more with extra `nmt translate` arguments: over a vocabulary
    shortlist (`nmt shortlist`, then `--shortlist`) at the default sizes and a smaller one
    (BENCHMARKS section 4), and, on a CPU with bfloat16 units (where `--precision auto`
    picks it), in mixed_bfloat16 without and with the default shortlist."""
    from nmt.config import DecodeConfig
    from nmt.precision import explain_precision

    decode = DecodeConfig()
    default = f"shortlist k={decode.shortlist_top_k} N={decode.shortlist_frequent}"
    rows = {
        f"{NMT_A}, {default} (default)": ["--shortlist"],
        f"{NMT_A}, shortlist k=5 N=50": ["--shortlist-top-k", "5", "--shortlist-frequent", "50"],
    }
    if explain_precision("auto", gpu_visible=False)[0] == "mixed_bfloat16":
        bf16 = ["--precision", "mixed_bfloat16"]
        rows[f"{NMT_A}, mixed_bfloat16"] = bf16
        rows[f"{NMT_A}, mixed_bfloat16, {default}"] = [*bf16, "--shortlist"]
    return rows


def _section2_models(ctx: Benchmark) -> dict:
    """Section 2's results, training its models first when they are missing."""
    s2 = ctx.results.get("2")
    need_train = not s2 or not Path(s2["systems"][0]["model_dir"]).exists()
    if not need_train and not ctx.args.skip_peer:
        need_train = (
            s2["systems"][2].get("not_run") or not Path(s2["systems"][2]["model_dir"]).exists()
        )
    if need_train:
        ctx.log("section 3 needs the section 2 models: training them first")
        from bench.sections import s2_train

        s2 = s2_train.run(ctx)
    return s2


def _sources(ctx: Benchmark, root: Path) -> dict:
    """The full and head source files (ours and, with the peer, its pieces) and references."""
    plan = ctx.plan
    test_src = ctx.corpus("test2016", ctx.src_lang)
    n_file = sum(1 for _ in open(test_src, encoding="utf-8"))
    n_full = min(plan.test_lines or n_file, n_file)
    files = {"n_full": n_full, "full": test_src}
    if n_full < n_file:
        files["full"] = head_file(ctx, test_src, n_full, root / f"test_{n_full}.{ctx.src_lang}")
    files["head"] = head_file(ctx, test_src, plan.head_lines, root / f"head.{ctx.src_lang}")
    test_ref = ctx.corpus("test2016", ctx.tgt_lang)
    files["refs"] = test_ref.read_text(encoding="utf-8").splitlines()[:n_full]
    if not ctx.args.skip_peer:
        ctx.ensure_peer()
        files["peer_full"] = ctx.peer_data.test_src
        if n_full < n_file:
            files["peer_full"] = head_file(ctx, files["peer_full"], n_full, root / "test.pieces")
        files["peer_head"] = head_file(
            ctx, ctx.peer_data.test_src, plan.head_lines, root / "head.pieces"
        )
    return files


def _limited_model(ctx: Benchmark, s2: dict, root: Path, full_src: Path) -> tuple[Path, int]:
    """The section-2 model limited to the decode lengths, its shortlist learned, and the
    batch_tokens that give about the peer's decoding batch."""
    from nmt.vocab import Vocab

    max_length, min_length = ctx.args.decode_max_length, ctx.args.decode_min_length
    small_dir = Path(s2["systems"][0]["model_dir"])
    limited = limited_model_dir(
        small_dir,
        root / f"{small_dir.name}_min{min_length}_max{max_length}",
        max_length,
        min_length,
    )
    ctx.log(
        f"{limited}: {small_dir} with decode.max_length_a {max_length}, max_length_b 0, "
        f"min_length {min_length}"
    )
    if not (limited / "shortlist.npz").exists():
        ctx.run([*nmt_cli(), "shortlist", "--model", limited], "s3_shortlist")
    sp = Vocab.load(small_dir).processor("source")
    with open(full_src, encoding="utf-8") as f:
        matched = matched_decode_batch_tokens([len(sp.encode(line.rstrip("\n"))) for line in f])
    return limited, matched


def _systems(ctx: Benchmark, s2: dict, limited: Path, matched: int) -> list[dict]:
    """What section 3 decodes with: name, model directory, checkpoint (None: the peer),
    batch_tokens and extra `nmt translate` arguments."""
    systems = [
        dict(name=NMT_A, model_dir=limited, checkpoint="last"),
        dict(name=NMT_A_MATCHED, model_dir=limited, checkpoint="last", batch_tokens=matched),
        *[
            dict(name=name, model_dir=limited, checkpoint="last", extra=extra)
            for name, extra in variants().items()
        ],
    ]
    if not ctx.args.skip_peer:
        peer_dir = Path(s2["systems"][2]["model_dir"])
        systems.append(dict(name=PEER_NAME, model_dir=peer_dir, checkpoint=None))
    model = ctx.args.model
    if model and (model / "config.yaml").exists():
        systems.append(
            dict(name=f"nmt recommended ({model.name})", model_dir=model, checkpoint="best")
        )
    elif model:
        ctx.log(f"{model}: not a model directory; the recommended model's rows are left out")
    return systems


def _decode_row(ctx: Benchmark, system: dict, beam: int, files: dict, root: Path) -> dict:
    """One system at one beam: the full file and its head, timed, the full output scored."""
    from nmt.evaluation import score

    name, model_dir, checkpoint = system["name"], system["model_dir"], system["checkpoint"]
    batch_tokens, extra = system.get("batch_tokens"), system.get("extra", [])
    row: dict[str, Any] = {"system": name, "beam": beam}
    tag = re.sub(r"\W+", "_", f"{name.split(' ')[0]}_{model_dir.name}")
    if batch_tokens:
        tag += f"_bt{batch_tokens}"
    if extra:
        tag += "_" + re.sub(r"\W+", "_", "".join(extra))
    max_length, min_length = ctx.args.decode_max_length, ctx.args.decode_min_length
    for part in ("full", "head"):
        out = root / f"{tag}_beam{beam}_{part}.txt"
        if checkpoint is None:
            src = files[f"peer_{part}"]
            run = peer_decode(ctx, model_dir, src, out, beam, max_length, min_length)
        else:
            run = nmt_decode(
                ctx, model_dir, checkpoint, files[part], out, beam, batch_tokens, extra
            )
        hyp = out.read_text(encoding="utf-8").splitlines()
        ctx.record(3, name, f"beam {beam}, {part} ({len(hyp)} lines)", run["wall"], run["cpu"],
                   run["peak_rss"])  # fmt: skip
        row[part] = {k: run[k] for k in ("wall", "cpu", "peak_rss")}
        row[f"{part}_lines"] = len(hyp)
        if part == "full":
            row.update(bleu=score(hyp, files["refs"][: len(hyp)]).score, pieces=run["pieces"])
            row.update({k: run[k] for k in ("command", "batch", "limit")})
    return finish_decode_row(row, ctx.plan.head_lines)


def run(ctx: Benchmark) -> dict:
    from nmt.config import load_config

    root = ctx.workdir / "s3"
    s2 = _section2_models(ctx)
    root.mkdir(parents=True, exist_ok=True)
    files = _sources(ctx, root)
    limited, matched = _limited_model(ctx, s2, root, files["full"])
    systems = _systems(ctx, s2, limited, matched)
    rows = [
        _decode_row(ctx, system, beam, files, root) for beam in ctx.plan.beams for system in systems
    ]
    out = {
        "rows": rows,
        "lines": files["n_full"],
        "head_lines": ctx.plan.head_lines,
        "steps": s2["systems"][0]["steps"],
        "max_length": ctx.args.decode_max_length,
        "min_length": ctx.args.decode_min_length,
        "batch_tokens": load_config(limited / "config.yaml").decode.batch_tokens,
        "limited_model_dir": str(limited),
        "small_model_dir": str(Path(s2["systems"][0]["model_dir"])),
        "processes": [p for p in ctx.procs if p["section"] == 3],
    }
    ctx.results["3"] = out
    ctx.save_results()
    return out


def nmt_decode(
    ctx,
    model_dir: Path,
    checkpoint: str,
    src: Path,
    out: Path,
    beam: int,
    batch_tokens: Optional[int] = None,
    extra: Sequence[str] = (),
):
    """`nmt translate` end to end (`--batch-tokens` when given, else the model's config; `extra`
    arguments such as `--shortlist`); output pieces by re-encoding our detokenized output."""
    from nmt.config import load_config

    command = [*nmt_cli(), "translate", src, "--model", model_dir, "--checkpoint", checkpoint]
    command += ["--beam", str(beam), "-o", out, "--quiet"]
    if batch_tokens:
        command += ["--batch-tokens", str(batch_tokens)]
    command += list(extra)
    proc = ctx.run(command, f"s3_{out.stem}")
    sp = spm_processor(target_spm(model_dir))
    # SentencePiece decode + encode round-trips up to rare non-canonical segmentations.
    pieces = [len(sp.encode(line)) for line in out.read_text(encoding="utf-8").splitlines()]
    decode = load_config(model_dir / "config.yaml").decode
    return {
        "wall": proc.wall,
        "cpu": proc.cpu,
        "peak_rss": proc.peak_rss,
        "pieces": pieces,
        "command": shlex.join(proc.command),
        "batch": f"{batch_tokens or decode.batch_tokens} tokens",
        "limit": (
            (f"{decode.min_length}-" if decode.min_length else "")
            + (
                f"{decode.max_length_a:g}"
                if decode.max_length_b == 0
                else f"{decode.max_length_a:g} + {decode.max_length_b:g} x (source + 1)"
            )
        ),
    }


def peer_decode(
    ctx,
    model_dir: Path,
    pieces_src: Path,
    out: Path,
    beam: int,
    max_length: int,
    min_length: int = 0,
):
    """`onmt-main infer` end to end (bench_peer.infer_peer, `max_length` and
    `min_length` as its maximum_ and minimum_decoding_length), then detokenized."""
    out_pieces = out.with_suffix(".pieces")
    ctx.log(f"{out.stem}: onmt-main infer {pieces_src} (beam {beam})")
    with ctx.peer_errors():
        run = ctx.peer.infer_peer(
            ctx.peer_data,
            model_dir,
            pieces_src,
            out_pieces,
            beam=beam,
            onmt_main=ctx.onmt_main,
            max_decoding_length=max_length,
            min_decoding_length=min_length,
        )
        ctx.peer.detokenize(out_pieces, ctx.peer_data.spm_model, out)
    ctx.log(
        f"{out.stem}: {run.wall_seconds:.1f} s wall, {run.cpu_seconds:.1f} s CPU, "
        f"peak RSS {mib(run.peak_rss_bytes):.0f} MiB"
    )
    text = out_pieces.read_text(encoding="utf-8")
    return {
        "wall": run.wall_seconds,
        "cpu": run.cpu_seconds,
        "peak_rss": run.peak_rss_bytes,
        "pieces": [len(line.split()) for line in text.splitlines()],
        "command": shlex.join(run.command),
        "batch": f"{run.batch_size} examples" if run.batch_size else "default",
        "limit": (f"{run.min_decoding_length}-" if run.min_decoding_length else "")
        + f"{run.max_decoding_length}",
    }


def decode_table(ctx: Benchmark, out: dict) -> str:
    """Section 3's table: one row per system and beam ("not run" rows for a peer left out)."""
    columns = [
        ("system", "l"),
        ("beam", "r"),
        ("BLEU", "r"),
        ("end-to-end s", "r"),
        ("CPU s", "r"),
        ("peak RSS MiB", "r"),
        (f"first {out['head_lines']} lines s", "r"),
        ("steady sentences/s", "r"),
        ("mean output pieces", "r"),
        ("steady target pieces/s", "r"),
        ("batch", "l"),
        ("length limit", "l"),
    ]
    rows = []
    for r in out["rows"]:
        rows.append(
            [
                r["system"],
                r["beam"],
                fmt(r["bleu"], 2),
                fmt(r["full"]["wall"], 1),
                fmt(r["full"]["cpu"], 1),
                fmt(mib(r["full"]["peak_rss"])),
                fmt(r["head"]["wall"], 1),
                fmt(r["sentences_per_s"], 1, missing="n/a"),
                fmt(r["mean_pieces"], 1),
                fmt(r["pieces_per_s"], missing="n/a"),
                r["batch"],
                r["limit"],
            ]
        )
    if ctx.args.skip_peer:
        for beam in ctx.plan.beams:
            rows.append([PEER_NAME, beam, *[NOT_RUN] * (len(columns) - 2)])
    return format_table(columns, rows)


def render(ctx: Benchmark, out: dict) -> str:
    commands = [r["command"] for r in out["rows"]]
    limit = out.get("max_length", ctx.args.decode_max_length)
    least = out.get("min_length", 0)
    if least == limit:
        length_rule = fill("s3_decode.exact", limit=limit)
    elif least:
        length_rule = fill("s3_decode.range", least=least, limit=limit)
    else:
        length_rule = fill("s3_decode.limit", limit=limit)
    text = fill(
        "s3_decode",
        title=SECTION_TITLES[3],
        provenance=ctx.provenance(),
        lines=out["lines"],
        head_lines=out["head_lines"],
        src_lang=ctx.src_lang,
        tgt_lang=ctx.tgt_lang,
        steps=out["steps"],
        length_rule=length_rule,
        limited=shown_path(out.get("limited_model_dir", "")),
        least=least,
        limit=limit,
        batch_tokens=out.get("batch_tokens", "its config"),
        peer_infer_batch=PEER_INFER_BATCH,
        table=decode_table(ctx, out),
    )
    return "\n".join([text, "", command_block(commands)])
