"""Shared test setup: quiet TensorFlow, the `slow` marker, the Multi30k location, `gpu` tests
skipped where TensorFlow sees no GPU, and the work units of parallel runs (pytest-xdist)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("NMT_MULTI30K", REPO.parent / "shared" / "data" / "multi30k"))


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    if not (MULTI30K / "train.en").exists():
        pytest.skip(f"Multi30k not found at {MULTI30K} (set NMT_MULTI30K to its directory)")
    return MULTI30K


def _gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU. Without an NVIDIA driver on the machine the answer is no
    without importing TensorFlow (collection stays as fast as before)."""
    import glob

    if not (glob.glob("/dev/nvidia[0-9]*") or os.path.isdir("/proc/driver/nvidia")):
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


# Parallel runs (`pytest -n N --dist loadfile --no-loadscope-reorder`, as scripts/test.sh runs
# them): each test module is one unit of work, so a module's fixtures are made once (the tests of
# the trained demo model share one module for that). Each worker sorts its collection slowest
# tier first (system, integration, unit) and the units go out in that order, so that the many
# short unit tests fill the end of the run instead of a long training starting last.
_TIER_ORDER = {"system": 0, "integration": 1, "unit": 2}


def _tier(item) -> int:
    parts = item.nodeid.split("::")[0].split("/")  # e.g. tests/unit/test_lstm.py
    return min((_TIER_ORDER[p] for p in parts if p in _TIER_ORDER), default=len(_TIER_ORDER))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_tier)  # stable: the order within a tier stays the collection order
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items and not _gpu_visible():
        skip = pytest.mark.skip(reason="no GPU visible to TensorFlow")
        for item in gpu_items:
            item.add_marker(skip)
