"""The prepared GPU check (run it through scripts/gpu_check.sh, which picks the Python).

    python scripts/gpu_check.py OUTDIR [--budget SECONDS]

Writes OUTDIR/report.md and OUTDIR/report.json (rewritten after every part, so a check cut
short still leaves a partial report), the parts' logs in OUTDIR/logs/. Every part runs in its
own process with its own timeout, within one overall budget (default 450 s); a part that
fails, times out or finds no time left is reported as such and the others still run.

Parts, on a machine where TensorFlow sees a GPU:
  env        the GPUs and driver as TensorFlow sees them (and nvidia-smi, when present)
  tests      the `gpu`-marked tests (pytest -m gpu)
  lstm       LSTM layer train-step tokens/s side by side in one process: ours with cuDNN,
             ours without, keras.layers.LSTM, in float32 and mixed_float16
  train_1k, train_4k, train_16k
             the Multi30k-recipe `nmt train` step (scripts/bench_train.py, configs/
             multi30k_en_de.yaml) in float32 and mixed_float16 at 1k/4k/16k-token batches
  decode     beam-5 sentences/s of the recipe model in float32 and mixed_float16
             (NMT_GPU_CHECK_MODEL=DIR: a trained model directory; else untrained weights)

Without a GPU it says so in one line, runs env, lstm, a tiny train step and decode on tiny
shapes (seconds), and exits 0: that keeps the script working in CI. Exit status: 0 when every
part that ran passed (targets missed are reported, not failures), 1 otherwise.

Data: Multi30k from NMT_MULTI30K, ../shared/data/multi30k or ./shared/data/multi30k.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "multi30k_en_de.yaml"
TINY = REPO / "configs" / "tiny.yaml"
DEFAULT_BUDGET = 450.0  # seconds: the 8 minutes, less start-up and a margin
# Each part's own limit (seconds) on a GPU; with no GPU the parts run on tiny shapes.
GPU_PARTS = {
    "env": 60,
    "tests": 150,
    "lstm": 90,
    "train_4k": 90,
    "train_1k": 75,
    "train_16k": 90,
    "decode": 75,
}
CPU_PARTS = {"env": 180, "tests": 5, "lstm": 0, "train_tiny": 90, "decode": 0}
CPU_IN_ENV = ["lstm", "decode"]  # without a GPU these run in the env part's process
TRAIN_TOKENS = {"train_1k": 1024, "train_4k": 4096, "train_16k": 16384, "train_tiny": 256}
TARGETS = (
    "LSTM train step: ours >= 0.9x keras.layers.LSTM (cuDNN), float32 and mixed_float16",
    "full training step: mixed_float16 >= 1.5x float32 at 4k-token batches",
)


def multi30k() -> Path | None:
    candidates = [os.environ.get("NMT_MULTI30K"), REPO.parent / "shared" / "data" / "multi30k"]
    candidates.append(REPO / "shared" / "data" / "multi30k")
    for candidate in candidates:
        if candidate and (Path(candidate) / "train.en").exists():
            return Path(candidate)
    return None


# --------------------------------------------------------------------------------------------
# Parts that run in a child process (`--part NAME`): each returns a JSON-able dict.


def part_env(args) -> dict:
    import shutil

    import keras
    import tensorflow as tf

    from nmt.precision import cpu_description, explain_precision

    gpus = tf.config.list_physical_devices("GPU")
    details = [tf.config.experimental.get_device_details(g) for g in gpus]
    build = {k: str(v) for k, v in tf.sysconfig.get_build_info().items()}
    smi = None
    if shutil.which("nvidia-smi"):
        query = "--query-gpu=name,driver_version,memory.total,compute_cap"
        done = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)  # fmt: skip
        smi = done.stdout.strip() or done.stderr.strip()
    policy, why = explain_precision("auto")
    return {
        "gpus": [
            dict(name=g.name, **{k: str(v) for k, v in d.items()})
            for g, d in zip(gpus, details, strict=True)
        ],  # fmt: skip
        "nvidia_smi": smi,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "build": {k: build[k] for k in sorted(build) if "cuda" in k or "cudnn" in k},
        "cpu": cpu_description(),
        "cpus": os.cpu_count(),
        "auto_precision": f"{policy} ({why})",
        "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
    }


def _policy(name: str):
    import contextlib

    import keras

    @contextlib.contextmanager
    def scope():
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(name)
        try:
            yield
        finally:
            keras.mixed_precision.set_global_policy(previous)

    return scope()


def _median_times(fns: dict, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per call; calls alternate, the order flipping every round."""
    import numpy as np
    import tensorflow as tf

    def block(out):
        np.asarray(tf.nest.flatten(out)[0])

    for fn in fns.values():
        for _ in range(warmup):
            block(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(steps):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            block(fns[name]())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _lstm_layers(units: int, gpu: bool) -> tuple[dict, list[str]]:
    """{variant: layer} and notes: keras.layers.LSTM and ours with / without cuDNN (ours as
    built by default where nmt.layers.LSTM has no use_cudnn argument)."""
    import inspect

    import keras

    from nmt.layers import LSTM

    layers, notes = {"keras.layers.LSTM": keras.layers.LSTM(units, return_sequences=True)}, []
    if "use_cudnn" in inspect.signature(LSTM.__init__).parameters:
        if gpu:
            layers["nmt (cuDNN)"] = LSTM(units, return_sequences=True, use_cudnn=True)
        else:
            notes.append("nmt (cuDNN): not run, no GPU")
        layers["nmt (no cuDNN)"] = LSTM(units, return_sequences=True, use_cudnn=False)
    else:
        layers["nmt"] = LSTM(units, return_sequences=True)
        notes.append("nmt.layers.LSTM has no use_cudnn argument yet: one `nmt` variant")
    return layers, notes


def part_lstm(args) -> dict:
    import numpy as np
    import tensorflow as tf

    batch, steps, dim, units = (128, 40, 512, 512) if args.gpu else (4, 6, 8, 16)
    timed, warmup = (30, 5) if args.gpu else (2, 1)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, steps, dim)), tf.float32)  # (B, T, d)
    target = tf.constant(rng.normal(size=(batch, steps, units)), tf.float32)  # (B, T, u)
    rows, notes = [], []
    for policy in ("float32", "mixed_float16"):
        with _policy(policy):
            layers, notes = _lstm_layers(units, args.gpu)
            for layer in layers.values():
                layer.build(x.shape)
            reference = layers["keras.layers.LSTM"]
            for layer in layers.values():
                layer.set_weights(reference.get_weights())
            want = tf.cast(reference(x), tf.float32).numpy()
            diffs = {}  # before any training step changes the weights
            for name, layer in layers.items():
                got = tf.cast(layer(x), tf.float32).numpy()
                diffs[name] = float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))
            fns = {name: _train_step(layer, x, target) for name, layer in layers.items()}
        seconds = _median_times(fns, timed, warmup)
        base = seconds["keras.layers.LSTM"]
        for name, diff in diffs.items():
            rows.append({"precision": policy, "variant": name, "ms": 1e3 * seconds[name],
                         "tok_s": batch * steps / seconds[name], "vs_keras": base / seconds[name],
                         "max_rel_diff": diff})  # fmt: skip
    shape = {"batch": batch, "steps": steps, "input": dim, "units": units, "timed": timed}
    return {"shape": shape, "rows": rows, "notes": notes}


def _train_step(layer, x, target):
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(learning_rate=1e-4)
    if layer.compute_dtype == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(layer.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = tf.cast(layer(x, training=True), tf.float32)  # (B, T, u)
            loss = tf.reduce_mean(tf.square(y - target))
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, layer.trainable_variables)
        optimizer.apply(grads, layer.trainable_variables)
        return loss

    return step


def _decode_setup(args):
    """(config, vocab, lines, note) for the decoding benchmark."""
    from nmt.config import load_config
    from nmt.vocab import Vocab, train_vocab

    work = args.out / "work"
    if not args.gpu:
        source, target = _tiny_corpus(work / "tiny")
        config = load_config(TINY, [f"data.train_source={source}", f"data.train_target={target}"])
        vocab = train_vocab(config.vocab, [source], [target], work / "tiny_vocab")
        lines = source.read_text(encoding="utf-8").splitlines()[:8]
        return config, vocab, lines, "configs/tiny.yaml, untrained weights"
    data = multi30k()
    if data is None:
        raise SystemExit("Multi30k not found (set NMT_MULTI30K to its directory)")
    cache = Path.home() / ".cache" / "nmt" / "bench_train_vocab" / "en-de"
    config = load_config(RECIPE, [f"data.train_source={data}/train.en",
                                  f"data.train_target={data}/train.de"])  # fmt: skip
    if (cache / "joint.model").exists():
        vocab = Vocab.load(cache)
    else:
        vocab = train_vocab(config.vocab, [data / "train.en"], [data / "train.de"], cache)
    lines = (data / "test2016.en").read_text(encoding="utf-8").splitlines()[:500]
    return config, vocab, lines, "configs/multi30k_en_de.yaml, untrained weights"


def _decode_models(args, precision: str):
    """(model, vocab, decode config, note) in `precision`: NMT_GPU_CHECK_MODEL's checkpoint,
    or the benchmark config's model with seeded random weights."""
    import keras

    from nmt.checkpoints import build_model, load_model

    given = os.environ.get("NMT_GPU_CHECK_MODEL")
    if given and args.gpu:
        loaded = load_model(given, "best", precision)
        return loaded.model, loaded.vocab, loaded.config.decode, f"model {given}"
    config, vocab, _, note = args.decode_setup
    keras.utils.set_random_seed(1234)
    return build_model(config, vocab, dtype=precision), vocab, config.decode, note


def part_decode(args) -> dict:
    from nmt.translator import Translator

    args.decode_setup = _decode_setup(args)
    lines = args.decode_setup[2]
    repeats = 2 if args.gpu else 1
    rows, reference, note = [], None, ""
    for precision in ("float32", "mixed_float16"):
        model, vocab, decode, note = _decode_models(args, precision)
        translator = Translator(model, vocab, decode, warn=lambda message: None)
        encoded = [translator.encode(line, n) for n, line in enumerate(lines, 1)]
        translator.translate_encoded(encoded[:32], beam_size=5)  # traces the search
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            hyps = translator.translate_encoded(encoded, beam_size=5)
            seconds.append(time.perf_counter() - start)
        ids = [h[0].text for h in hyps]
        reference = reference or ids
        wall = statistics.median(seconds)
        tokens = sum(h[0].length for h in hyps)
        rows.append({"precision": precision, "sentences": len(lines), "seconds": wall,
                     "sentences_s": len(lines) / wall, "target_tok_s": tokens / wall,
                     "mean_length": tokens / max(len(lines), 1),
                     "same_as_float32": sum(a == b for a, b in zip(ids, reference, strict=True))
                     / max(len(lines), 1)})  # fmt: skip
    return {"rows": rows, "note": note, "batch_tokens": decode.batch_tokens}


def _tiny_corpus(directory: Path) -> tuple[Path, Path]:
    """60 seeded digit pairs (a source and its reverse) as train.en / train.de."""
    import random

    rng = random.Random(7)
    directory.mkdir(parents=True, exist_ok=True)
    pairs = []
    for _ in range(60):
        words = [str(rng.randint(0, 9)) for _ in range(rng.randint(3, 9))]
        pairs.append((" ".join(words), " ".join(reversed(words))))
    source, target = directory / "train.en", directory / "train.de"
    source.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    target.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return source, target


PARTS = {"env": part_env, "lstm": part_lstm, "decode": part_decode}


def run_part(args) -> int:
    """Run `--part NAME`; after `env` on a machine without a GPU, also the tiny CPU_IN_ENV
    parts in the same process (one TensorFlow start-up instead of three)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    names = [args.part]
    for name in names:
        start = time.perf_counter()
        result = PARTS[name](args)
        result["seconds"] = round(time.perf_counter() - start, 1)
        path = args.out / "parts" / f"{name}.json"
        path.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"gpu_check: part {name} done in {result['seconds']} s", flush=True)
        if name == "env" and not result["gpus"]:
            names += CPU_IN_ENV
    return 0


# --------------------------------------------------------------------------------------------
# The driver (no TensorFlow here): parts in child processes, the report after each.


def part_command(name: str, out: Path, gpu: bool) -> list[str]:
    py = sys.executable
    if name == "tests":
        return [py, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
                "--junitxml", str(out / "parts" / "tests.xml"),
                "tests/unit", "tests/integration"]  # fmt: skip
    if name.startswith("train_"):
        data = multi30k() if gpu else _tiny_corpus(out / "work" / "tiny")[0].parent
        if data is None:
            return []
        config = RECIPE if gpu else TINY
        steps = ["--steps", "10", "--warmup", "3", "--batches", "6"] if gpu else [
            "--steps", "2", "--warmup", "1", "--batches", "2"]  # fmt: skip
        cache = [] if gpu else ["--vocab-cache", str(out / "work" / "train_vocab")]
        return [py, str(REPO / "scripts" / "bench_train.py"), "--config", str(config),
                "--data", str(data), "--batch-tokens", str(TRAIN_TOKENS[name]),
                "--variants", "nmt:float32,nmt:mixed_float16", *steps, *cache,
                "--json", str(out / "parts" / f"{name}.json")]  # fmt: skip
    mode = ["--gpu"] if gpu else []
    return [py, str(Path(__file__).resolve()), str(out), "--part", name, *mode]


def run_child(name: str, command: list[str], out: Path, limit: float) -> dict:
    """Run one part; its record: status ok / failed / timeout / skipped, seconds, result."""
    if not command:
        return {"status": "skipped", "reason": "Multi30k not found (set NMT_MULTI30K)"}
    if limit < 5:
        return {"status": "skipped", "reason": "no time left in the budget"}
    log = out / "logs" / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            code = None
    record = {"seconds": round(time.perf_counter() - start, 1), "limit_s": round(limit)}
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
    result_file = out / "parts" / f"{name}.json"
    if result_file.exists():
        record["result"] = json.loads(result_file.read_text(encoding="utf-8"))
    if name == "tests":
        record["result"] = _junit_counts(out / "parts" / "tests.xml")
        record["summary"] = tail[-1] if tail else ""
        code = 0 if code == 5 else code  # 5: no tests collected
    if code is None:
        record.update(status="timeout", log_tail=tail)
    elif code != 0:
        record.update(status="failed", exit=code, log_tail=tail)
    else:
        record["status"] = "ok"
    return record


def _from_env_process(name: str, out: Path, env: dict) -> dict:
    """The record of a part the env process ran (no GPU): its result, or env's failure."""
    path = out / "parts" / f"{name}.json"
    if not path.exists():
        return {
            "status": env["status"] if env["status"] != "ok" else "failed",
            "reason": "did not finish in the env process",
            "log_tail": env.get("log_tail"),
        }
    result = json.loads(path.read_text(encoding="utf-8"))
    return {"status": "ok", "seconds": result["seconds"], "limit_s": env["limit_s"],
            "result": result}  # fmt: skip


def _junit_counts(path: Path) -> dict:
    import xml.etree.ElementTree as ElementTree

    if not path.exists():
        return {}
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["failed_tests"] = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return counts


def drive(out: Path, budget: float) -> int:
    from gpu_check_report import targets, write_report

    for sub in ("parts", "logs", "work"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for stale in (out / "parts").iterdir():
        stale.unlink()
    deadline = time.monotonic() + budget
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "budget_s": budget,
              "python": sys.executable, "repo_commit": _commit(), "parts": {}}  # fmt: skip
    env = run_child("env", part_command("env", out, False), out, CPU_PARTS["env"])
    report["parts"]["env"] = env
    gpu = bool(env.get("result", {}).get("gpus"))
    report["mode"] = "gpu" if gpu else "cpu"
    if not gpu:
        print("gpu_check: no GPU visible to TensorFlow: running the CPU-only parts on tiny "
              "shapes (no figures for the GPU targets)", flush=True)  # fmt: skip
    write_report(out, report)
    for name, limit in (GPU_PARTS if gpu else CPU_PARTS).items():
        if name == "env":
            continue
        if name == "tests" and not gpu:
            report["parts"][name] = {"status": "skipped", "reason": "no GPU"}
            continue
        if name in CPU_IN_ENV and not gpu:
            report["parts"][name] = _from_env_process(name, out, env)
            continue
        left = deadline - time.monotonic()
        report["parts"][name] = record = run_child(
            name, part_command(name, out, gpu), out, min(limit, left)
        )
        print(f"gpu_check: {name}: {record['status']} ({record.get('seconds', 0)} s)", flush=True)
        write_report(out, report)
    report["targets"] = targets(report) if gpu else []
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    write_report(out, report)
    print(f"gpu_check: report in {out / 'report.md'} and {out / 'report.json'}")
    bad = [n for n, p in report["parts"].items() if p["status"] in ("failed", "timeout")]
    return 1 if bad else 0


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10)  # fmt: skip
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="report directory (made if missing)")
    budget = float(os.environ.get("NMT_GPU_CHECK_BUDGET", DEFAULT_BUDGET))
    parser.add_argument("--budget", type=float, default=budget, help="seconds, all parts")
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--gpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    if args.part:
        return run_part(args)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return drive(args.out, args.budget)


if __name__ == "__main__":
    sys.exit(main())
