"""The run of a benchmark: arguments, work directory, results.json, timed processes, the shared
inputs (vocabulary, peer data) and the section loop."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import PEER_BATCH, SCRIPTS, SECTION_TITLES, BenchError
from bench.logs import LogWindow, parse_nmt_train_log
from bench.machine import machine_info
from bench.markdown import (
    SECTION_MARK,
    mib,
    shown_command,
    shown_path,
    update_markdown,
    write_atomic,
)
from bench.plan import FULL, QUICK, budget_line, planned_budget, probe_gflops
from bench.proc import ProcResult, nmt_cli, run_timed
from bench.prose import fill


def load_peer():
    """bench/peer (the OpenNMT-tf side), imported lazily."""
    from bench import peer

    return peer


class Benchmark:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.plan = QUICK if args.quick else FULL
        self.workdir: Path = args.workdir
        self.data: Path = args.data
        self.pair = args.pair
        self.src_lang, self.tgt_lang = args.pair.split("-")
        self.machine = machine_info()
        self.results = self._load_results()
        self.procs: list[dict] = []  # every timed process of this run (label, rss, ...)
        self.peer = None
        self.peer_data = None
        self.onmt_main = None
        self.command = self._command_line()
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.section_times: dict[int, float] = {}

    # ---- bookkeeping

    def log(self, message: str) -> None:
        print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def _command_line(self) -> str:
        parts = ["python", "scripts/benchmark.py", *sys.argv[1:]]
        nice = os.nice(0) if hasattr(os, "nice") else 0
        prefix = f"nice -n {nice} " if nice else ""
        return prefix + shown_command(parts)

    def _load_results(self) -> dict:
        path = self.workdir / "results.json"
        if path.exists():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
        return {}

    def save_results(self) -> None:
        write_atomic(self.workdir / "results.json", json.dumps(self.results, indent=1))

    def provenance(self) -> str:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        return fill(
            "provenance",
            command=self.command,
            python=shown_path(sys.executable),
            date=now,
            machine=self.machine.describe(),
            load=f"{load:.1f}",
        )

    def run(self, command: Sequence[str], label: str) -> ProcResult:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
        self.log(f"{label}: {shlex.join(str(c) for c in command)}")
        result = run_timed(command, self.workdir / "logs" / f"{safe}.log", label)
        self.log(
            f"{label}: {result.wall:.1f} s wall, {result.cpu:.1f} s CPU, "
            f"peak RSS {mib(result.peak_rss):.0f} MiB"
        )
        return result

    def run_worker(self, name: str, params: dict, label: str) -> tuple[dict, ProcResult]:
        folder = self.workdir / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        inp, out = folder / f"{label}.in.json", folder / f"{label}.out.json"
        write_atomic(inp, json.dumps(params, indent=1))
        out.unlink(missing_ok=True)
        command = [sys.executable, str(SCRIPTS / "benchmark.py"), "--worker", name, inp, out]
        proc = self.run(command, label)
        return json.loads(out.read_text(encoding="utf-8")), proc

    def record(
        self, section: int, system: str, what: str, wall: float, cpu: float, peak_rss: int
    ) -> None:
        """Note a timed process for section 4."""
        self.procs.append(
            {
                "section": section,
                "system": system,
                "what": what,
                "wall": wall,
                "cpu": cpu,
                "peak_rss": peak_rss,
            }
        )

    @contextlib.contextmanager
    def peer_errors(self):
        """bench_peer's failures (PeerError; SystemExit from a failed venv install) as
        BenchError, so that the section fails with one message and the others still run."""
        try:
            yield
        except SystemExit as e:
            raise BenchError(f"OpenNMT-tf: {e.code}") from None
        except Exception as e:
            if self.peer is not None and isinstance(e, self.peer.PeerError):
                raise BenchError(f"OpenNMT-tf: {e}") from None
            raise

    # ---- shared inputs

    def corpus(self, split: str, lang: str) -> Path:
        path = self.data / f"{split}.{lang}"
        if not path.exists():
            raise BenchError(f"{path}: not found (give --data, the Multi30k directory)")
        return path

    def batch_stats(self, spm: Path, batch_tokens: list[int], label: str, **extra) -> dict:
        """Sentences and tokens per batch of the real training pipeline (the batchstats worker)."""
        src, tgt = self.corpus("train", self.src_lang), self.corpus("train", self.tgt_lang)
        params = {
            "vocab": str(spm),
            "train_source": str(src),
            "train_target": str(tgt),
            "batch_tokens": batch_tokens,
            **extra,
            "batches_at_1k": self.plan.batch_sample,
            "seed": 1234,
        }
        return self.run_worker("batchstats", params, label)[0]

    def spm_model(self) -> Path:
        """The 8k joint SentencePiece model both systems use (trained once into the workdir)."""
        out = self.workdir / "spm"
        model = out / "joint.model"
        if not model.exists():
            src, tgt = self.corpus("train", self.src_lang), self.corpus("train", self.tgt_lang)
            command = [*nmt_cli(), "vocab", "--source", src, "--target", tgt, "--output", out]
            command += ["--size", "8000", "--model-type", "unigram", "--joint", "--seed", "1234"]
            self.run(command, "spm_train")
        return model

    def ensure_peer(self) -> None:
        """bench_peer, its venv (created when missing), versions and SentencePiece data."""
        if self.args.skip_peer or self.peer_data is not None:
            return
        self.peer = load_peer()
        with self.peer_errors():
            self.onmt_main = self.peer.ensure_peer_venv(self.peer.PEER_VENV, log=self.log)
            self.machine.peer = self.peer.peer_versions(self.peer.PEER_VENV)
            self.peer_data = self.peer.prepare_peer_data(
                self.data, self.pair, self.spm_model(), self.workdir / "peer_data"
            )

    def peer_train(self, model_dir: Path, total_steps: int):
        """bench_peer.train_peer up to `total_steps`, reporting every plan.peer_report_every."""
        kwargs: dict[str, Any] = {
            "batch_size": PEER_BATCH,
            "onmt_main": self.onmt_main,
            "log": self.log,
        }
        if "report_every" in inspect.signature(self.peer.train_peer).parameters:
            kwargs["report_every"] = self.plan.peer_report_every
        else:  # bench_peer reads its module setting when it writes the run config
            self.peer.REPORT_EVERY = self.plan.peer_report_every
        with self.peer_errors():
            run = self.peer.train_peer(self.peer_data, model_dir, total_steps, **kwargs)
        self.log(
            f"onmt-main train to step {run.final_step}: {run.wall_seconds:.1f} s wall, "
            f"{run.cpu_seconds:.1f} s CPU, peak RSS {mib(run.peak_rss_bytes):.0f} MiB"
        )
        return run

    def small_v1_yaml(self, batch_tokens: int, path: Path) -> Path:
        """Our NMTSmallV1-shaped config (bench_train.small_v1_config) on the shared vocabulary."""
        import yaml
        from bench_train import small_v1_config

        ns = argparse.Namespace(batch_tokens=batch_tokens, jit=False, seed=1234)
        src, tgt = self.corpus("train", self.src_lang), self.corpus("train", self.tgt_lang)
        values = small_v1_config(ns, src, tgt).to_dict()
        values["vocab"]["path"] = str(self.spm_model())
        values["train"].update(checkpoint_every=1_000_000, keep_checkpoints=1, max_steps=1)
        text = "# NMTSmallV1 shape for scripts/benchmark.py (bench_train.small_v1_config)\n"
        text += yaml.safe_dump(values, sort_keys=False)
        return write_atomic(path, text)

    def nmt_train(
        self, config: Path, model_dir: Path, max_steps: int, log_every: int, label: str
    ) -> tuple[ProcResult, list[LogWindow]]:
        command = [*nmt_cli(), "train", "--config", config, "--model-dir", model_dir]
        command += [
            "--set",
            f"train.max_steps={max_steps}",
            "--set",
            f"train.log_every={log_every}",
        ]
        proc = self.run(command, label)
        return proc, parse_nmt_train_log(proc.text)

    # ---- the whole run

    def head(self) -> str:
        return fill("head") + "\n"

    def main(self, sections: Sequence[int]) -> int:
        self.workdir.mkdir(parents=True, exist_ok=True)
        gflops = probe_gflops()
        budget = planned_budget(
            self.plan, sections, not self.args.skip_peer, self.args.decode_max_length, gflops
        )
        self.log(budget_line(budget, gflops))
        from bench.sections import SECTIONS

        texts: dict[int, str] = {}
        failed: dict[int, str] = {}
        for number in sections:
            start = time.perf_counter()
            self.log(f"section {number}: {SECTION_TITLES[number]}")
            try:
                section = SECTIONS[number]
                text = section.render(self, section.run(self))
                texts[number] = SECTION_MARK.format(number) + "\n" + text
            except BenchError as e:
                failed[number] = str(e)
                self.log(f"section {number} FAILED: {e}")
            finally:
                self.section_times[number] = time.perf_counter() - start
            if number in texts:  # write as we go: a later failure keeps what was measured
                update_markdown(self.args.out, self.head(), {number: texts[number]})
                self.log(f"section {number}: written into {self.args.out}")
        self.log(
            "time per section: "
            + ", ".join(
                f"B{n} {t / 60:.1f} min (planned {budget.get(n, 0) / 60:.1f})"
                for n, t in self.section_times.items()
            )
            + f"; total {sum(self.section_times.values()) / 60:.1f} min"
        )
        for number, message in failed.items():
            print(f"benchmark: section {number} failed: {message}", file=sys.stderr)
        return 1 if failed else 0
