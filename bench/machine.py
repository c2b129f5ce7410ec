"""What the machine is: CPU model, package versions."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
from dataclasses import dataclass
from typing import Optional


def cpu_model() -> str:
    from nmt.precision import cpu_info

    return cpu_info()[0]


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@dataclass
class Machine:
    cores: int
    cpu: str
    python: str
    tensorflow: str
    keras: str
    peer: Optional[dict] = None  # bench_peer.peer_versions()

    def describe(self) -> str:
        ours = (
            f"{self.cores} cores ({self.cpu}), Python {self.python}, "
            f"TensorFlow {self.tensorflow}, Keras {self.keras}"
        )
        if not self.peer:
            return ours + "; OpenNMT-tf not run"
        peer = ", ".join(f"{k} {v}" for k, v in self.peer.items())
        return f"{ours}; peer venv: {peer}"


def machine_info() -> Machine:
    return Machine(
        cores=os.cpu_count() or 0,
        cpu=cpu_model(),
        python=platform.python_version(),
        tensorflow=package_version("tensorflow"),
        keras=package_version("keras"),
    )
