"""scripts/profile_train.py: op kinds and the precision ceiling it reports."""

from __future__ import annotations

import pytest

from tests.helpers import load_script


@pytest.fixture(scope="module")
def profile_train():
    return load_script("profile_train")


@pytest.mark.parametrize(
    "op_type, kind",
    [
        ("_MklMatMul", "matmul"),
        ("_MklBatchMatMulV2", "matmul"),
        ("_MklNativeFusedMatMul", "matmul"),
        ("MatMul", "matmul"),
        ("Cast", "cast"),
        ("TensorListFromTensor", "loop lists"),
        ("StatelessRandomUniformV2", "random"),
        ("ResourceApplyAdam", "optimizer"),
        ("Sum", "reductions"),
        ("Max", "reductions"),
        ("UnsortedSegmentSum", "reductions"),
        ("_MklSoftmax", "reductions"),
        ("Maximum", "elementwise"),
        ("Sigmoid", "elementwise"),
        ("SigmoidGrad", "elementwise"),
        ("AddN", "elementwise"),
        ("ConcatV2", "data movement"),
        ("_MklTranspose", "data movement"),
        ("ZerosLike", "data movement"),
        ("TensorScatterSub", "data movement"),
        ("NoOp", "other"),
    ],
)
def test_op_types_fall_into_their_kind(profile_train, op_type, kind):
    assert profile_train.kind_of(op_type) == kind


def test_ceiling_separates_matmul_work_from_the_rest(profile_train):
    fast = {"wall": 1.0, "ops": {"_MklMatMul": 0.5, "Cast": 0.1, "Mul": 0.4}}
    slow = {"wall": 2.0, "ops": {"_MklMatMul": 1.0, "Mul": 0.3}}
    top = profile_train.ceiling(fast, slow)
    assert top["step_ratio"] == pytest.approx(2.0)
    assert top["op_ratio"] == pytest.approx(1.3 / 1.0)
    assert top["matmul_ratio"] == pytest.approx(2.0)
    # fast's matmuls (0.5) with slow's other work (0.3): 1.3 / 0.8
    assert top["shared_rest_ratio"] == pytest.approx(1.3 / 0.8)
    assert top["extra_in_a"] == pytest.approx({"cast": 0.1, "elementwise": 0.1})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--variants", "nmt:float32"], "--variants: expected two"),
        (["--variants", "a,b,c"], "--variants: expected two"),
        (["--steps", "0"], "--steps: expected at least 1"),
        (["--warmup", "-1"], "--warmup: expected 0 or more"),
    ],
)
def test_bad_arguments_are_refused(profile_train, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        profile_train.parse_args(["--config", "c.yaml", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
