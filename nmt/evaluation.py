"""Scores with sacreBLEU: corpus BLEU, chrF and TER with their signatures. No TensorFlow here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nmt import fileio
from nmt.errors import DataError

METRICS = ("bleu", "chrf", "ter")


@dataclass(frozen=True)
class Score:
    metric: str  # "bleu" | "chrf" | "ter"
    score: float
    signature: str
    text: str  # sacreBLEU's own one-line rendering, e.g. "BLEU = 34.2 65.1/40.3/..."

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "score": self.score,
            "signature": self.signature,
            "text": self.text,
        }


def _metric(name: str, lowercase: bool = False):
    from sacrebleu.metrics import BLEU, CHRF, TER

    if name == "ter":
        return TER(case_sensitive=not lowercase)
    return {"bleu": BLEU, "chrf": CHRF}[name](lowercase=lowercase)


def score(
    hypotheses: list[str], references: list[str], metric: str = "bleu", lowercase: bool = False
) -> Score:
    """Corpus-level score of detokenized hypotheses against one reference each (cased, 13a;
    `lowercase` compares lowercased text, as sacreBLEU's `-lc`, and says so in the signature).

    No lines at all (two empty files) score 0, as an empty hypothesis against an empty
    reference does."""
    if metric not in METRICS:
        raise DataError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    if len(hypotheses) != len(references):
        raise DataError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: counts must match"
        )
    scorer = _metric(metric, lowercase)
    hypotheses, references = list(hypotheses), list(references)
    if not hypotheses:  # sacreBLEU fails on no lines; one empty pair scores the same: 0
        hypotheses, references = [""], [""]
    result = scorer.corpus_score(hypotheses, [references])
    signature = str(scorer.get_signature())
    return Score(metric, float(result.score), signature, str(result))


def bleu(hypotheses: list[str], references: list[str]):
    """sacreBLEU corpus BLEU (the BLEUScore object; `.score` is the number)."""
    from sacrebleu.metrics import BLEU

    return BLEU().corpus_score(list(hypotheses), [list(references)])


read_lines = fileio.read_lines  # every line of a UTF-8 file (plain or .gz) or stdin


def score_files(
    hypothesis_path: str | Path,
    reference_path: str | Path,
    metrics: tuple[str, ...] = ("bleu",),
    lowercase: bool = False,
) -> list[Score]:
    """Score a hypothesis file against a reference file, line by line."""
    fileio.check_distinct_inputs([(f"HYP {hypothesis_path}", hypothesis_path),
                                  (f"REF {reference_path}", reference_path)])  # fmt: skip
    hyps, refs = read_lines(hypothesis_path), read_lines(reference_path)
    if len(hyps) != len(refs):
        raise DataError(
            f"{hypothesis_path} has {len(hyps)} lines but {reference_path} has {len(refs)}"
        )
    return [score(hyps, refs, m, lowercase) for m in metrics]


def evaluate_model(
    model_dir: str | Path | Sequence[str | Path],
    source_path: str | Path,
    reference_path: str | Path,
    *,
    checkpoint: str | Sequence[str] = "best",
    beam_size: int | None = None,
    length_penalty: float | None = None,
    metrics: tuple[str, ...] = ("bleu", "chrf"),
    hypothesis_path: str | Path | None = None,
    precision: str = "float32",
    shortlist: bool | None = None,
    shortlist_top_k: int | None = None,
    shortlist_frequent: int | None = None,
) -> list[Score]:
    """Translate `source_path` with a model and score it against `reference_path`.

    Several model directories or checkpoints decode as an ensemble (`ensemble.load_ensemble`);
    `precision` is the dtype policy to decode in (`nmt.precision`).
    `shortlist*`: decode with a vocabulary shortlist (`shortlist.configure`).
    """
    from nmt import shortlist as shortlists
    from nmt.ensemble import load_ensemble
    from nmt.translator import Translator

    inputs = [(f"--src {source_path}", source_path), (f"--ref {reference_path}", reference_path)]
    fileio.check_distinct_inputs(inputs)
    if hypothesis_path is not None:
        fileio.check_output_file(hypothesis_path, option="--hyp-out", inputs=inputs)
    sources, refs = read_lines(source_path), read_lines(reference_path)
    if len(sources) != len(refs):
        raise DataError(
            f"{source_path} has {len(sources)} lines but {reference_path} has {len(refs)}"
        )
    loaded = load_ensemble(model_dir, checkpoint, precision)
    decode, table = shortlists.prepare(loaded, shortlist, shortlist_top_k, shortlist_frequent)
    translator = Translator(loaded.model, loaded.vocab, decode, shortlist=table)
    encoded = [translator.encode(line, n, str(source_path)) for n, line in enumerate(sources, 1)]
    hyps = [
        h[0].text
        for h in translator.translate_encoded(
            encoded, beam_size=beam_size, length_penalty=length_penalty
        )
    ]
    if hypothesis_path is not None:
        fileio.write_atomic(
            hypothesis_path, "".join(h + "\n" for h in hyps), what="the translations"
        )
    return [score(hyps, refs, m) for m in metrics]
