"""Keras layers of the nmt model."""

from nmt.layers.lstm import LSTM, LSTMCell

__all__ = ["LSTM", "LSTMCell"]
