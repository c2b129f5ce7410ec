"""The package version, kept in a module of its own so setup.py can read it without TensorFlow."""

__version__ = "0.1.0.dev0"
