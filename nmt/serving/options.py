"""The defaults of `nmt serve` (one home: the CLI, `nmt.serve.serve` and `ModelServer` read
them here) and the rule for a model name. Imports nothing, so the CLI stays fast."""

from __future__ import annotations

import re

DEFAULT_MODEL_NAME = "nmt"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_BATCH_TIMEOUT_MS = 5.0
# TF Serving's --file_system_poll_wait_seconds (its model server's default is 1 s, too);
# 0 reads the versions once, at start.
DEFAULT_POLL_SECONDS = 1.0

_MODEL_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot be a model name in /v1/models/NAME, or None when it can."""
    if _MODEL_NAME.fullmatch(name):
        return None
    return "use letters, digits, '_', '-', '.'"
