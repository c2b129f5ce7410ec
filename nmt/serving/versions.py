"""One loaded export version, and which version directories under an export base are there.

A version directory is EXPORT_BASE/N/ with a saved_model.pb (`nmt export` builds it in a
hidden temporary directory and renames it into place, so it appears complete at once). A
directory copied in by other means can be seen half-written; `fingerprint` lets the poller
load a new directory only once its files have stopped changing between two polls.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from nmt import constants
from nmt.errors import NmtError
from nmt.serving.api import model_error
from nmt.serving.batcher import Batcher

WARMUP_TEXT = "warm up"


def version_dirs(export_base: Path) -> dict[int, Path]:
    """{N: EXPORT_BASE/N} for the integer-named directories that hold a saved_model.pb."""
    from nmt.export import list_versions

    return {
        v: export_base / str(v)
        for v in list_versions(export_base)
        if (export_base / str(v) / "saved_model.pb").is_file()
    }


def fingerprint(path: Path) -> tuple:
    """(relative path, size, mtime) of every file under `path`, sorted: equal on two polls
    when nothing is being written there. A file that vanishes meanwhile makes it differ."""
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                return (("vanished", full),)
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def _tensor_specs(concrete_fn) -> dict[str, Any]:
    """{input name: tf.TensorSpec} of a loaded signature function."""
    _, kwargs = concrete_fn.structured_input_signature
    return dict(kwargs)


class ModelVersion:
    """One loaded export version: its signatures, a text batcher and its metadata.

    `acquire()`/`release()` count the requests using it, so that a version the poller has
    replaced is unloaded (`close`) only once they have finished (`idle`).
    """

    def __init__(
        self, name: str, version: int, path: Path, *, max_batch_size: int, batch_timeout_ms: float
    ):
        from nmt.export import load_export

        self.name = name
        self.version = version
        self.path = path
        self.module = load_export(path)
        self.signatures = dict(self.module.signatures)
        if constants.SERVING_SIGNATURE not in self.signatures:
            raise NmtError(f"{path}: no {constants.SERVING_SIGNATURE!r} signature")
        self.specs = {key: _tensor_specs(fn) for key, fn in self.signatures.items()}
        self._text_input = self._single_string_input(constants.SERVING_SIGNATURE)
        self.batcher = Batcher(
            self._run_text,
            max_batch_size=max_batch_size,
            timeout_s=batch_timeout_ms / 1000.0,
            name=f"{name}-{version}",
        )
        self._metadata = self._read_metadata()  # now: the directory may be replaced later
        self._users = 0
        self._users_lock = threading.Lock()
        self.closed = False

    def _single_string_input(self, key: str) -> str | None:
        import tensorflow as tf

        specs = self.specs[key]
        if len(specs) == 1:
            ((input_name, spec),) = specs.items()
            if spec.dtype == tf.string and spec.shape.rank == 1:
                return input_name
        return None

    # --- use counting

    def acquire(self) -> ModelVersion:
        with self._users_lock:
            self._users += 1
        return self

    def release(self) -> None:
        with self._users_lock:
            self._users -= 1

    @property
    def idle(self) -> bool:
        with self._users_lock:
            return self._users == 0

    # --- running

    def _run_text(self, texts: list[bytes]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        fn = self.signatures[constants.SERVING_SIGNATURE]
        out = fn(**{self._text_input: tf.constant(texts, tf.string)})
        return {name: value.numpy() for name, value in out.items()}

    def warm_up(self) -> None:
        """One translation so that the first request does not pay for graph set-up."""
        self._run_text([WARMUP_TEXT.encode()])

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `signature` on `inputs` (text requests to serving_default through the batcher);
        a failure is raised as a ServingError (`api.model_error`)."""
        import tensorflow as tf

        if signature == constants.SERVING_SIGNATURE and self._text_input is not None:
            texts = list(inputs[self._text_input])
            try:
                return self.batcher.submit(texts) if texts else self._run_text(texts)
            except Exception as e:
                raise model_error(e) from None
        fn = self.signatures[signature]
        specs = self.specs[signature]
        tensors = {k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()}
        try:
            out = fn(**tensors)
        except Exception as e:
            raise model_error(e) from None
        return {name: value.numpy() for name, value in out.items()}

    def metadata(self) -> dict[str, Any]:
        """The SignatureDefMap as TF Serving's GetModelMetadata returns it, as JSON."""
        return self._metadata

    def _read_metadata(self) -> dict[str, Any]:
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString((self.path / "saved_model.pb").read_bytes())
        defs = saved.meta_graphs[0].signature_def
        return {
            key: json_format.MessageToDict(
                defs[key],
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
            for key in sorted(defs)
        }

    def close(self) -> None:
        """Finish queued requests, stop the batcher and drop the loaded graph."""
        self.batcher.close()
        self.closed = True
        self.signatures = {}
        self.module = None
