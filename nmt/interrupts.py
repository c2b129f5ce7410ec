"""SIGINT and SIGTERM during training: the first one stops cleanly, a second one at once.

`StopRequest` installs handlers for SIGINT and SIGTERM (in the main thread; elsewhere it
does nothing). Until `arm()` (set-up: nothing to keep yet) a signal aborts at once. Once
armed, the first signal only records itself (`signum`, `requested`) and says so on stderr;
the training loop checks it after every step, writes a checkpoint and stops. A second
signal aborts at once: `Aborted` (a KeyboardInterrupt) is raised wherever the main thread
is, and the `finally` blocks of checkpoint writes remove their staging directories, so the
checkpoints written before stay complete. The exit code is 128 + the signal number
(130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Aborted(KeyboardInterrupt):
    """Raised by a signal that stops training at once; `signum` is the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    return 128 + int(signum)


class StopRequest:
    """Context manager for the handlers; see the module docstring."""

    def __init__(self, log: Callable[[str], None] | None = None):
        self.signum: int | None = None
        self.armed = False
        self._log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def arm(self) -> None:
        self.armed = True

    def _handle(self, signum, frame) -> None:
        if not self.armed or self.signum is not None:
            raise Aborted(signum)
        self.signum = signum
        self._log(
            f"nmt: {signal_name(signum)}: stopping after this step and saving a checkpoint "
            "(send it again to stop at once without saving)"
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
