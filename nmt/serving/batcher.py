"""Groups the strings of concurrent text requests into one model run (TF Serving's batching)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import numpy as np

from nmt.serving.api import ServingError


@dataclass
class _Job:
    texts: list[bytes]
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None


_STOP = object()


class Batcher:
    """Collects 1-D string inputs from concurrent callers and runs `fn` once per batch.

    A batch starts with the first waiting request and takes the requests that arrive within
    `timeout_s` of it, until `max_batch_size` strings (a request is never split; one larger
    than `max_batch_size` runs alone). `fn(texts: list[bytes]) -> {name: array (B, ...)}`
    runs on the batcher's thread; each caller gets its own rows back.
    """

    def __init__(self, fn: Callable, *, max_batch_size: int, timeout_s: float, name: str = ""):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be positive, got {max_batch_size}")
        self._fn = fn
        self.max_batch_size = int(max_batch_size)
        self.timeout_s = max(float(timeout_s), 0.0)
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self.requests = 0  # requests served
        self.strings = 0  # strings translated
        self.runs = 0  # calls of fn
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, texts: list[bytes]) -> dict[str, np.ndarray]:
        """Translate `texts` (possibly together with other callers' texts); blocks."""
        job = _Job(list(texts))
        with self._lock:
            if self._closed:
                raise ServingError(HTTPStatus.SERVICE_UNAVAILABLE, "the server is shutting down")
            self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.outputs is not None
        return job.outputs

    def close(self) -> None:
        """Finish the queued requests, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        pending = None
        while True:
            job = pending if pending is not None else self._queue.get()
            pending = None
            if job is _STOP:
                return
            batch, size = [job], len(job.texts)
            deadline = time.monotonic() + self.timeout_s
            while size < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    nxt = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else (self._queue.get_nowait())
                    )
                except queue.Empty:
                    break
                if nxt is _STOP or size + len(nxt.texts) > self.max_batch_size:
                    pending = nxt
                    break
                batch.append(nxt)
                size += len(nxt.texts)
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        texts = [t for job in batch for t in job.texts]
        try:
            self.runs += 1
            outputs = self._fn(texts)
            start = 0
            for job in batch:
                end = start + len(job.texts)
                job.outputs = {name: value[start:end] for name, value in outputs.items()}
                start = end
        except BaseException as e:  # every waiting caller gets the error
            for job in batch:
                job.error = e
        self.requests += len(batch)
        self.strings += len(texts)
        for job in batch:
            job.done.set()
