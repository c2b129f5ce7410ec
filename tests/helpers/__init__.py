"""Helpers shared by test modules (test modules never import each other): tiny corpora and
configs (corpus), tiny model directories and exports (export, checkpoints), the memorised
model (memorised), an in-process server (serve), Keras layer checks (layer_checks), a tiny
random Seq2Seq with batches and its step-by-step reference (seq2seq)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str, module_name: str | None = None) -> ModuleType:
    """Import scripts/NAME.py as a module (registered in sys.modules, where dataclasses look
    their module up)."""
    module_name = module_name or name
    spec = importlib.util.spec_from_file_location(module_name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def umask(mask: int) -> Iterator[int]:
    """Run the block under the process umask `mask`; yields the mode an ordinary mkdir then
    gives (0o777 & ~mask), and restores the previous umask."""
    previous = os.umask(mask)
    try:
        yield 0o777 & ~mask
    finally:
        os.umask(previous)
