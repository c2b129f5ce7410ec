"""One tiny model directory (random weights, joint vocabulary) and its SavedModel export,
made once per test session, and a call of its text signature."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from nmt.constants import CONFIG_FILE, SERVING_SIGNATURE, VERSION_FILE

WORDS = (
    "ein Hund läuft über die grüne Wiese zwei Männer sprechen im Café naïve Straße "
    "a dog runs across the green grass two men talk in the"
).split()
MAX_SOURCE_LENGTH = 12
BEAM = 3
LENGTH_PENALTY = 0.6

# Inputs that exercise Translator's text handling: empty and blank lines (no pieces), long
# lines cut to MAX_SOURCE_LENGTH pieces, characters the vocabulary lacks, mixed lengths.
INPUTS = [
    "ein Hund läuft",
    "",
    "   ",
    "zwei Männer sprechen über die grüne Wiese im Café und der Hund läuft über die Straße",
    "a",
    "unbekannt ✓ 😀 Ωmega",
    "two men talk " * 20,
    "\t",
    "naïve",
]


def _corpus_lines(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10))) for _ in range(count)]


def make_model_dir(path: Path, *, joint: bool = True, seed: int = 7, min_length: int = 0) -> Path:
    """A complete model directory (config, VERSION, vocabulary, one checkpoint) with random
    weights, loadable by `nmt.checkpoints.load_model`."""
    import keras
    import tensorflow as tf

    from nmt.checkpoint_files import write_checkpoint
    from nmt.checkpoints import build_model, inference_checkpoint
    from nmt.config import Config, DecodeConfig, ModelConfig, VocabConfig, save_config
    from nmt.modeldir import CHECKPOINTS_DIR
    from nmt.version import __version__
    from nmt.vocab import train_vocab

    path.mkdir(parents=True, exist_ok=True)
    (path / "train.src").write_text("\n".join(_corpus_lines(seed, 300)) + "\n", encoding="utf-8")
    (path / "train.tgt").write_text(
        "\n".join(_corpus_lines(seed + 1, 300)) + "\n", encoding="utf-8"
    )
    config = Config(
        vocab=VocabConfig(size=40 if joint else 42, joint=joint),
        model=ModelConfig(
            embedding_dim=8, units=16, encoder_layers=1, decoder_layers=1, dropout=0.0
        ),
        decode=DecodeConfig(
            beam_size=BEAM,
            length_penalty=LENGTH_PENALTY,
            max_length_a=4.0,
            max_length_b=1.5,
            max_source_length=MAX_SOURCE_LENGTH,
            min_length=min_length,
        ),
    ).validate()
    vocab = train_vocab(config.vocab, [path / "train.src"], [path / "train.tgt"], path)
    keras.utils.set_random_seed(seed)
    model = build_model(config, vocab)
    save_config(config, path / CONFIG_FILE)
    (path / VERSION_FILE).write_text(__version__ + "\n", encoding="utf-8")
    step = tf.Variable(17, dtype=tf.int64, trainable=False)
    write_checkpoint(inference_checkpoint(model, step), path / CHECKPOINTS_DIR, 17)
    return path


@dataclass
class TinyExport:
    model_dir: Path
    export_base: Path
    version_dir: Path


def make_tiny_export(root: Path) -> TinyExport:
    """The session's tiny model and its export as ROOT/nmt-tiny/{model,export/1}; made once
    and reused (tests only read it)."""
    from nmt.export import export_model

    home = root / "nmt-tiny"
    done = home / "ready"
    model_dir, export_base = home / "model", home / "export"
    if not done.exists():
        make_model_dir(model_dir)
        export_model(model_dir, export_base)
        done.write_text("ok\n")
    return TinyExport(model_dir, export_base, export_base / "1")


def read_export_info(path: Path) -> dict:
    """assets.extra/export.json of an exported version directory ({} when absent)."""
    info = Path(path) / "assets.extra" / "export.json"
    return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}


def run_text(module, texts: list[str]) -> tuple[list[str], list[float]]:
    import tensorflow as tf

    out = module.signatures[SERVING_SIGNATURE](text=tf.constant(texts, tf.string))
    return (
        [t.decode("utf-8") for t in out["translation"].numpy().tolist()],
        [float(s) for s in out["score"].numpy()],
    )
