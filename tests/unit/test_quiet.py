"""nmt.quiet: which of TensorFlow's start-up lines are dropped, and that a crash still shows.

The lines are those TensorFlow 2.21 printed on `import tensorflow` here (a CPU machine without
CUDA drivers); the import itself, played by a fake `tensorflow` package in a fresh process, is
tested in tests/integration/test_fresh_process.py.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

from nmt.quiet import NoiseFilter, _forward, _warn_unusable_gpu, silence_tensorflow
from tests.helpers.noise import KEPT, NOISE

REPO = Path(__file__).resolve().parents[2]


def kept(lines: list[bytes]) -> list[bytes]:
    noise = NoiseFilter()
    return [line for line in lines if noise.keep(line)]


def test_known_noise_is_dropped_and_the_rest_kept():
    assert kept(NOISE) == []
    assert kept(KEPT) == KEPT
    assert kept([NOISE[3], NOISE[4], *KEPT, NOISE[0], NOISE[3], NOISE[4]]) == KEPT
    # a line after a kept log line is not taken for a dropped line's continuation
    assert kept([NOISE[1], KEPT[0], b"  at the end\n"]) == [KEPT[0], b"  at the end\n"]


def test_forward_copies_all_but_the_noise():
    sink = io.BytesIO()
    _forward(io.BytesIO(b"".join(NOISE[:3] + KEPT[:1] + [b"no newline at the end"])), sink)
    assert sink.getvalue() == KEPT[0] + b"no newline at the end"


def test_silence_and_undo(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    finders = list(sys.meta_path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        undo = silence_tensorflow()
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
        warnings.warn_explicit("noise", UserWarning, "layer.py", 1, module="keras.src.layer")
        warnings.warn_explicit("noise", UserWarning, "x.py", 1, module="tensorflow")
        warnings.warn_explicit("shown", UserWarning, "x.py", 1, module="kerasish")
        undo()
    assert [str(w.message) for w in seen] == ["shown"]
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    assert sys.meta_path == finders


class FakeTF:
    def __init__(self, gpus):
        self.config = self
        self.gpus = gpus

    def list_physical_devices(self, kind):
        assert kind == "GPU"
        return self.gpus


def test_a_gpu_tensorflow_cannot_use_is_said_in_nmts_words(monkeypatch, capsys):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(os.path, "exists", lambda path: path == "/dev/nvidia0")
    _warn_unusable_gpu(FakeTF(gpus=["GPU:0"]))
    assert capsys.readouterr().err == ""
    _warn_unusable_gpu(FakeTF(gpus=[]))
    assert capsys.readouterr().err.startswith("nmt: warning: this machine has an NVIDIA GPU but")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # hidden on purpose: nothing to say
    _warn_unusable_gpu(FakeTF(gpus=[]))
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    _warn_unusable_gpu(FakeTF(gpus=[]))
    assert capsys.readouterr().err == ""
