"""Named fault points: places in training and file writing where a test may act.

Each point is a `fire(POINT, **info)` call in nmt's code; it does nothing unless a test has
installed a hook for that point, which is then called with the keyword arguments listed
below. Fault-injection tests use them to send a signal or SIGKILL the process at a chosen
moment, or to damage a file just written, without patching nmt's private names:

    remove = faults.install(faults.STEP_END, lambda step: ...)
    ...
    remove()

(or `with faults.installed(POINT, hook): ...`). A hook may raise; the exception propagates
from the point as it would from the code around it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

SETUP_STAGED = "setup_staged"  # staging: config.yaml staged for a new model directory
STEP_START = "step_start"  # step: the global step a train step is about to run
STEP_END = "step_end"  # step: the global step a train step has just run (nothing saved)
CHECKPOINT_WRITE = "checkpoint_write"  # directory, step: TensorFlow is about to write
CHECKPOINT_STAGED = "checkpoint_staged"  # directory, staging: written, nothing moved yet
CHECKPOINT_MOVE = "checkpoint_move"  # src, dst: a checkpoint file is about to be moved
CHECKPOINT_PRUNE = "checkpoint_prune"  # directory, keep: old checkpoints about to go
CHECKPOINT_DELETE = "checkpoint_delete"  # prefix: a checkpoint is about to be deleted
FILE_REPLACE = "file_replace"  # src, dst: an atomic write's temporary file is about to move

POINTS = frozenset(
    {
        SETUP_STAGED,
        STEP_START,
        STEP_END,
        CHECKPOINT_WRITE,
        CHECKPOINT_STAGED,
        CHECKPOINT_MOVE,
        CHECKPOINT_PRUNE,
        CHECKPOINT_DELETE,
        FILE_REPLACE,
    }
)

Hook = Callable[..., Any]
_hooks: dict[str, Hook] = {}


def _check(point: str) -> None:
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}; choose one of {sorted(POINTS)}")


def install(point: str, hook: Hook) -> Callable[[], None]:
    """Call `hook(**info)` at every `fire(point, ...)`; returns a function that removes it
    (and puts back the hook it replaced, if any)."""
    _check(point)
    previous = _hooks.get(point)
    _hooks[point] = hook

    def remove() -> None:
        if previous is None:
            _hooks.pop(point, None)
        else:
            _hooks[point] = previous

    return remove


@contextlib.contextmanager
def installed(point: str, hook: Hook) -> Iterator[None]:
    """`install` for the duration of a `with` block."""
    remove = install(point, hook)
    try:
        yield
    finally:
        remove()


def fire(point: str, **info: Any) -> None:
    """Run the hook installed for `point`, if any (a dictionary look-up otherwise)."""
    hook = _hooks.get(point)
    if hook is not None:
        hook(**info)
