"""sacreBLEU scoring: values equal sacreBLEU's own, errors name the files."""

import pytest
import sacrebleu

from nmt import evaluation
from nmt.errors import DataError

HYPS = ["the cat sat on the mat .", "a dog runs in the park", "hello world"]
REFS = ["the cat sat on a mat .", "a dog is running in the park", "hello , world"]


def test_scores_equal_sacrebleu():
    assert evaluation.score(HYPS, REFS, "bleu").score == pytest.approx(
        sacrebleu.corpus_bleu(HYPS, [REFS]).score
    )
    assert evaluation.score(HYPS, REFS, "chrf").score == pytest.approx(
        sacrebleu.corpus_chrf(HYPS, [REFS]).score
    )
    assert evaluation.score(HYPS, HYPS, "bleu").score == pytest.approx(100.0)


def test_signature_states_case_and_tokenizer():
    s = evaluation.score(HYPS, REFS, "bleu")
    assert "case:mixed" in s.signature and "tok:13a" in s.signature
    assert s.text.startswith("BLEU = ")


def test_lowercase_scores_equal_sacrebleu_lc_and_say_so():
    upper = [h.upper() for h in HYPS]
    from sacrebleu.metrics import BLEU, CHRF, TER

    for metric, reference in (
        ("bleu", BLEU(lowercase=True).corpus_score(upper, [REFS])),
        ("chrf", CHRF(lowercase=True).corpus_score(upper, [REFS])),
        ("ter", TER(case_sensitive=False).corpus_score(upper, [REFS])),
    ):
        lowered = evaluation.score(upper, REFS, metric, lowercase=True)
        assert lowered.score == pytest.approx(reference.score)
        assert lowered.score != pytest.approx(evaluation.score(upper, REFS, metric).score)
    assert "case:lc" in evaluation.score(upper, REFS, "bleu", lowercase=True).signature


def test_count_mismatch_and_unknown_metric():
    with pytest.raises(DataError, match="2 hypotheses but 3 references"):
        evaluation.score(HYPS[:2], REFS)
    with pytest.raises(DataError, match="unknown metric"):
        evaluation.score(HYPS, REFS, "meteor")


def test_score_files(tmp_path):
    h, r = tmp_path / "h.txt", tmp_path / "r.txt"
    h.write_text("".join(x + "\n" for x in HYPS))
    r.write_text("".join(x + "\n" for x in REFS))
    (bleu,) = evaluation.score_files(h, r)
    assert bleu.score == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    r.write_text("one line\n")
    with pytest.raises(DataError, match=f"{h} has 3 lines but {r} has 1"):
        evaluation.score_files(h, r)
    r.write_bytes(b"ok\n\xff\xfe bad\nok\n")
    with pytest.raises(DataError, match=f"{r}:2: invalid UTF-8"):
        evaluation.score_files(h, r)
