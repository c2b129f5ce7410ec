"""The GPU path (marker `gpu`: skipped where TensorFlow sees no GPU; scripts/gpu_check.sh runs
them and puts the outcome in its report).

* nmt.layers.LSTM against keras.layers.LSTM (cuDNN on a GPU): outputs, final states and
  gradients agree to 1e-5 of their largest magnitude in float32 (TensorFloat-32 matmuls off,
  since they round to 10 mantissa bits) and within float16 rounding under mixed_float16, for
  the layer as built by default and for each `use_cudnn` value the layer accepts.
* `nmt train` with `train.precision: auto` on a GPU: mixed_float16 with loss scaling, finite
  losses, float32 variables in the checkpoint.
* That model exported on the GPU, reloaded, translates as the library does on the GPU and on
  the CPU (what a CPU-only serving machine would see).
* MirroredStrategy over all GPUs in mixed_float16 (with two or more GPUs).
"""

from __future__ import annotations

import contextlib
import inspect
import math

import numpy as np
import pytest

from tests.helpers.corpus import Lines, tiny_config

pytestmark = pytest.mark.gpu

LINES = ["1 2 3", "4 5 6 7", "9", "8 8 0 1 2 3 4", "5 5 5"]


@contextlib.contextmanager
def _precision(policy: str, tf32: bool = False):
    import keras
    import tensorflow as tf

    previous = keras.mixed_precision.global_policy()
    previous_tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    keras.mixed_precision.set_global_policy(policy)
    tf.config.experimental.enable_tensor_float_32_execution(tf32)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
        tf.config.experimental.enable_tensor_float_32_execution(previous_tf32)


def _ours(units: int, use_cudnn):
    from nmt.layers import LSTM

    kwargs = dict(return_sequences=True, return_state=True)
    if use_cudnn == "default":
        return LSTM(units, **kwargs)
    if "use_cudnn" not in inspect.signature(LSTM.__init__).parameters:
        pytest.skip("nmt.layers.LSTM has no use_cudnn argument (yet)")
    return LSTM(units, use_cudnn=use_cudnn, **kwargs)


def _run(layer, x, mask):
    """Outputs at the valid positions, final states, and gradients of a loss over them."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        seq, h, c = layer(x, mask=mask, training=True)
        valid = tf.cast(mask, seq.dtype)[:, :, None]
        seq = tf.cast(seq * valid, tf.float32)  # (B, T, u)
        h, c = tf.cast(h, tf.float32), tf.cast(c, tf.float32)  # (B, u)
        loss = tf.reduce_sum(tf.sin(seq)) + tf.reduce_sum(h * c)
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return [seq, h, c, *[tf.cast(g, tf.float32) for g in grads]]


@pytest.mark.parametrize("use_cudnn", ["default", "auto", True, False])
@pytest.mark.parametrize("policy,tol", [("float32", 1e-5), ("mixed_float16", 2e-2)])
def test_lstm_matches_keras_lstm_on_gpu(policy, tol, use_cudnn):
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(3)
    batch, steps, dim, units = 8, 12, 16, 32
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[0] = steps
    mask = tf.constant(np.arange(steps)[None, :] < lengths[:, None])  # right-padded
    x = tf.constant(rng.normal(size=(batch, steps, dim)), tf.float32)  # (B, T, d)
    with _precision(policy), tf.device("/GPU:0"):
        ref = keras.layers.LSTM(units, return_sequences=True, return_state=True)
        ours = _ours(units, use_cudnn)
        ref.build(x.shape)
        ours.build(x.shape)
        ours.set_weights(ref.get_weights())
        xin = tf.cast(x, ref.compute_dtype)
        want, got = _run(ref, xin, mask), _run(ours, xin, mask)
    assert all(w.dtype == "float32" for w in ours.weights)
    names = ["outputs", "h", "c", "d input", *(f"d {w.path}" for w in ours.trainable_weights)]
    for name, a, b in zip(names, got, want, strict=True):
        a, b = a.numpy(), b.numpy()
        assert np.all(np.isfinite(a)), name
        scale = max(float(np.max(np.abs(b))), 1e-30)
        assert float(np.max(np.abs(a - b))) / scale <= tol, name


@pytest.fixture(scope="module")
def gpu_model(tmp_path_factory):
    """The tiny config trained for 6 steps on the GPU with train.precision auto."""
    from nmt.training import train

    root = tmp_path_factory.mktemp("gpu")
    config = tiny_config(
        root / "c", "train.max_steps=6", "train.checkpoint_every=6", "train.precision=auto"
    )
    config.train.eval_every = 6
    result = train(config, root / "m", log=Lines())
    return root, result


def test_auto_trains_mixed_float16_with_float32_variables(gpu_model):
    import tensorflow as tf

    from nmt import checkpoint_files

    root, result = gpu_model
    assert result.precision == "mixed_float16" and result.step == 6
    assert all(math.isfinite(x) for x in result.losses)
    [prefix] = checkpoint_files.list_checkpoints(root / "m" / "checkpoints")
    dtypes = tf.train.load_checkpoint(str(prefix)).get_variable_to_dtype_map()
    floating = {name: d for name, d in dtypes.items() if d.is_floating}
    assert floating and all(d == tf.float32 for d in floating.values()), floating


def _library(model_dir, device: str):
    import tensorflow as tf

    from nmt.checkpoints import load_model
    from nmt.translator import Translator

    with tf.device(device):
        loaded = load_model(model_dir, "last")
        translator = Translator(loaded.model, loaded.vocab, loaded.config.decode, warn=print)
        return [h[0] for h in translator.translate_hypotheses(LINES)]


def test_export_on_gpu_reloads_and_translates_as_on_cpu(gpu_model):
    import tensorflow as tf

    from nmt.constants import SERVING_SIGNATURE
    from nmt.export import export_model, load_export

    root, _ = gpu_model
    with tf.device("/GPU:0"):
        version = export_model(root / "m", root / "export", checkpoint="last")
        out = load_export(version).signatures[SERVING_SIGNATURE](text=tf.constant(LINES))
    texts = [t.decode("utf-8") for t in out["translation"].numpy().tolist()]
    scores = out["score"].numpy()
    for device in ("/GPU:0", "/CPU:0"):
        expected = _library(root / "m", device)
        assert texts == [h.text for h in expected], device
        np.testing.assert_allclose(scores, [h.score for h in expected], atol=1e-3)


def test_mirrored_strategy_over_all_gpus_in_mixed_float16(tmp_path):
    import tensorflow as tf

    from nmt.training import train

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < 2:
        pytest.skip(f"{len(gpus)} GPU: MirroredStrategy needs two or more")
    config = tiny_config(
        tmp_path / "c", "train.max_steps=4", "train.precision=mixed_float16", dev=False
    )
    result = train(config, tmp_path / "m", strategy="mirrored", log=Lines())
    assert result.num_replicas == len(gpus) and result.precision == "mixed_float16"
    assert all(math.isfinite(x) for x in result.losses)
