"""nmt.quiet: which of TensorFlow's start-up lines are dropped, and that a crash still shows.

The lines are those TensorFlow 2.21 printed on `import tensorflow` here (a CPU machine without
CUDA drivers); the import itself is played by a fake `tensorflow` package in a subprocess.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

from nmt.quiet import NoiseFilter, _forward, _warn_unusable_gpu, silence_tensorflow

REPO = Path(__file__).resolve().parents[2]

NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796162699.483277    3821 port.cc:153] oneDNN custom operations are on. You "
    b"may see slightly different numerical results due to floating-point round-off errors.\n",
    b"I0000 00:00:1796162699.483754    3821 cudart_stub.cc:31] Could not find cuda drivers on "
    b"your machine, GPU will not be used.\n",
    b"I0000 00:00:1796162699.607882    3821 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.\n",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.\n",
    b"E0000 00:00:1796162749.887049    4182 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n",
    b"2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could "
    b"not find cuda drivers on your machine, GPU will not be used.\n",
    b"E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN factory: "
    b"Attempting to register factory for plugin cuDNN when one has already been registered\n",
    b"W0000 00:00:1758131045.228 3722035 computation_placer.cc:177] computation placer already "
    b"registered.\n",
]
KEPT = [
    b"F0000 00:00:1796162699.6 3821 op_kernel.cc:1] Check failed: kernel registered twice\n",
    b"E0000 00:00:1796162699.6 3821 dso_loader.cc:1] libtensorflow_framework.so.2: bad ELF\n",
    b"Traceback (most recent call last):\n",
    b"Fatal Python error: Segmentation fault\n",
]


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


FAKE_TENSORFLOW = """\
import os, sys
os.write(2, {noise!r})
os.write(2, b"F0000 00:00:1.5 7 fake.cc:1] Check failed: boom\\n")
print("python line", file=sys.stderr)
if os.environ.get("FAKE_ABORT"):
    os.abort()
raise ImportError("fake tensorflow is broken")
"""


def import_fake_tensorflow(tmp_path: Path, abort: bool) -> subprocess.CompletedProcess:
    package = tmp_path / "tensorflow"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(FAKE_TENSORFLOW.format(noise=b"".join(NOISE)))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "FAKE_ABORT": "1" * abort}
    code = "from nmt.quiet import silence_tensorflow; silence_tensorflow(); import tensorflow"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)


def test_errors_at_import_still_show(tmp_path):
    done = import_fake_tensorflow(tmp_path, abort=False)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 1
    assert lines[:2] == ["F0000 00:00:1.5 7 fake.cc:1] Check failed: boom", "python line"]
    assert lines[-1] == "ImportError: fake tensorflow is broken"
    assert not any(
        b"oneDNN" in line or b"absl::InitializeLog" in line for line in done.stderr.splitlines()
    )


def test_a_crash_at_import_still_shows_its_last_words(tmp_path):
    done = import_fake_tensorflow(tmp_path, abort=True)
    assert done.returncode < 0  # killed by SIGABRT
    assert done.stderr.decode().splitlines() == [
        "F0000 00:00:1.5 7 fake.cc:1] Check failed: boom",
        "python line",
    ]


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
