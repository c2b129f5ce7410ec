"""nmt: LSTM encoder-decoder translation with attention on Keras 3 + TensorFlow.

`import nmt` stays TensorFlow-free; the heavy public names are resolved on first use.
"""

from nmt.version import __version__

_LAZY = {
    "LSTM": "nmt.layers.lstm",
    "LSTMCell": "nmt.layers.lstm",
    "Seq2Seq": "nmt.model",
    "Translator": "nmt.translator",
    "load_config": "nmt.config",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")
