"""`ModelServer`: the versions of one model under an export base, and the API calls on them.

Versions follow TF Serving's file-system source with its default "latest" version policy:
every `poll_seconds` the export base is listed again; a new version directory is loaded (and
warmed up) once its files have not changed between two polls, then it takes the requests
without a restart, and the version it replaces is unloaded as soon as the requests using it
have finished. A version that fails to load is reported in the status (state END with its
error) and the served version stays; it is tried again when its files change. With
`all_versions` every version directory is served. The version set never goes empty: when the
directories disappear, the versions already loaded keep serving.

At start-up the versions load at once, and a failure there is an error (NmtError).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any, NoReturn

from nmt.errors import NmtError
from nmt.serving import api
from nmt.serving.options import (
    DEFAULT_BATCH_TIMEOUT_MS,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MODEL_NAME,
    DEFAULT_POLL_SECONDS,
    model_name_problem,
)
from nmt.serving.versions import ModelVersion, fingerprint, version_dirs


def stderr_log(message: str) -> None:
    """The default `log` of ModelServer: one `nmt serve: ...` line on stderr."""
    sys.stderr.write(f"nmt serve: {message}\n")


class ModelServer:
    """The served model: versions under `export_base`, request handling without HTTP.

    `log(message)` receives the version events after start-up (loaded, unloaded, failed).
    `poll_seconds` 0 reads the versions once. `close()` stops polling and unloads all.
    """

    def __init__(
        self,
        export_base: str | Path,
        model_name: str = DEFAULT_MODEL_NAME,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS,
        all_versions: bool = False,
        warm_up: bool = True,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        log: Callable[[str], None] | None = stderr_log,
    ):
        base = Path(export_base)
        _check_export_base(base)
        problem = model_name_problem(model_name)
        if problem is not None:
            raise ValueError(f"model name {model_name!r}: {problem}")
        if max_batch_size < 1 or batch_timeout_ms < 0 or poll_seconds < 0:
            raise ValueError(
                "max_batch_size must be positive, batch_timeout_ms and poll_seconds >= 0; got "
                f"{max_batch_size}, {batch_timeout_ms}, {poll_seconds}"
            )
        self.export_base = base
        self.model_name = model_name
        self.all_versions = all_versions
        self.poll_seconds = float(poll_seconds)
        self._load_options = dict(max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms)
        self._warm_up = warm_up
        self._log = log or (lambda message: None)
        self.stats: dict[str, int] = {"requests": 0, "errors": 0}
        self._stats_lock = threading.Lock()
        self._lock = threading.RLock()
        self.versions: dict[int, ModelVersion] = {}  # served: what requests get
        self.known: dict[int, Path] = {}  # version directories seen at the last poll
        self._retiring: list[ModelVersion] = []  # replaced, unloaded once idle
        self._loading: set[int] = set()
        self._seen: dict[int, tuple] = {}  # fingerprints of directories not served
        self._failed: dict[int, tuple[tuple, str]] = {}  # version -> (fingerprint, error)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        try:
            self.refresh(initial=True)
        except BaseException:
            self.close()
            raise
        if not self.versions:
            raise NmtError(
                f"{base}: no exported versions (expected {base}/N/saved_model.pb; "
                "write one with `nmt export`)"
            )
        if self.poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll, name="version-poller", daemon=True)
            self._poller.start()

    @property
    def latest(self) -> int:
        """The highest version served."""
        with self._lock:
            return max(self.versions)

    # --- versions

    def refresh(self, *, initial: bool = False) -> None:
        """List the export base once: load what the policy wants, retire what it replaces,
        unload retired versions that are idle. `initial`: load without waiting for the
        directories to settle, and raise on a failed load."""
        found = version_dirs(self.export_base)
        ready = self._ready(found, initial)
        if not ready:
            wanted: set[int] = set()
        else:
            wanted = set(ready) if self.all_versions else {max(ready)}
        for v in sorted(wanted - set(self.versions)):
            self._load(v, ready[v], initial)
        with self._lock:
            self.known = dict(found)
            if wanted & set(self.versions):  # keep the old ones until a wanted one serves
                for v in sorted(set(self.versions) - wanted):
                    self._retiring.append(self.versions.pop(v))
                    self._log(f"version {v} replaced; unloading it once idle")
        self._unload_idle()

    def _ready(self, found: dict[int, Path], initial: bool) -> dict[int, Path]:
        """The found directories that may be served: served ones, and others whose files are
        unchanged since the last poll (all at start-up), unless they failed as they are."""
        ready = {}
        for v, path in found.items():
            if v in self.versions:
                ready[v] = path
                continue
            prints = fingerprint(path)
            failed = self._failed.get(v)
            settled = initial or self._seen.get(v) == prints
            if settled and (failed is None or failed[0] != prints):
                ready[v] = path
            self._seen[v] = prints
        return ready

    def _load(self, v: int, path: Path, initial: bool) -> None:
        with self._lock:
            self._loading.add(v)
        loaded = None
        try:
            loaded = ModelVersion(self.model_name, v, path, **self._load_options)
            if self._warm_up:
                loaded.warm_up()
        except Exception as e:
            if loaded is not None:
                loaded.close()
            if initial:
                raise
            message = api.clean_tf_message(str(e)) or type(e).__name__
            self._failed[v] = (self._seen.get(v, ()), message)
            self._log(f"version {v} not loaded: {message}")
            return
        finally:
            with self._lock:
                self._loading.discard(v)
        self._failed.pop(v, None)
        with self._lock:
            self.versions[v] = loaded
        if not initial:
            self._log(f"loaded version {v} from {path}")

    def _unload_idle(self) -> None:
        with self._lock:
            idle = [served for served in self._retiring if served.idle]
            self._retiring = [served for served in self._retiring if served not in idle]
        for served in idle:
            served.close()
            self._log(f"unloaded version {served.version}")

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as e:  # a passing file-system error: keep serving, try again
                self._log(f"polling {self.export_base} failed: {e}")

    @contextmanager
    def serving(self, name: str, version: str | None = None) -> Iterator[ModelVersion]:
        """The version a request for NAME[/versions/N] gets, held for the request's time."""
        number = api.parse_version(version)
        if name != self.model_name:
            which = "Latest" if number is None else "Specific"
            spec = name if number is None else f"{name}, {number}"
            raise api.not_found(f"Servable not found for request: {which}({spec})")
        with self._lock:
            if not self.versions:
                raise api.ServingError(HTTPStatus.SERVICE_UNAVAILABLE, "the server is closed")
            served = self.versions.get(max(self.versions) if number is None else number)
            if served is None:
                raise api.not_found(f"Servable not found for request: Specific({name}, {number})")
            served.acquire()
        try:
            yield served
        finally:
            served.release()

    # --- API

    def status(self, name: str, version: str | None = None) -> dict[str, Any]:
        number = api.parse_version(version)
        if name != self.model_name:
            raise api.not_found(f"Could not find any versions of model {name}")
        with self._lock:
            states = {v: ("END", "") for v in self.known}
            states.update({v: ("END", error) for v, (_, error) in self._failed.items()})
            states.update({v: ("LOADING", "") for v in self._loading})
            states.update({served.version: ("UNLOADING", "") for served in self._retiring})
            states.update({v: ("AVAILABLE", "") for v in self.versions})
        if number is not None and number not in states:
            raise api.not_found(f"Could not find version {number} of model {name}")
        numbers = [number] if number is not None else sorted(states, reverse=True)
        return {"model_version_status": [_version_status(v, *states[v]) for v in numbers]}

    def metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        with self.serving(name, version) as served:
            return {
                "model_spec": {"name": name, "signature_name": "", "version": str(served.version)},
                "metadata": {"signature_def": {"signature_def": served.metadata()}},
            }

    def predict(self, name: str, version: str | None, body: bytes) -> dict[str, Any]:
        with self.serving(name, version) as served:
            request = api.parse_predict(body, served.specs)
            outputs = served.run(request.signature, request.inputs)
        return api.predict_response(outputs, request.rows)

    def refuse(self, verb: str, name: str, version: str | None) -> NoReturn:
        """classify and regress: 404 for an unknown model first (as TF Serving), then 400."""
        with self.serving(name, version):
            pass
        raise api.unsupported_verb(verb)

    def metrics(self) -> str:
        """Counters in the Prometheus text format."""
        with self._stats_lock:
            requests, errors = self.stats["requests"], self.stats["errors"]
        with self._lock:
            served = sorted(self.versions.items())
        lines = [
            "# TYPE nmt_http_requests_total counter",
            f"nmt_http_requests_total {requests}",
            "# TYPE nmt_http_errors_total counter",
            f"nmt_http_errors_total {errors}",
        ]
        for metric, attr in (
            ("nmt_predict_requests_total", "requests"),
            ("nmt_translated_strings_total", "strings"),
            ("nmt_model_runs_total", "runs"),
        ):
            lines.append(f"# TYPE {metric} counter")
            for v, version in served:
                value = getattr(version.batcher, attr)
                lines.append(f'{metric}{{model="{self.model_name}",version="{v}"}} {value}')
        return "\n".join(lines) + "\n"

    def count(self, status: int) -> None:
        with self._stats_lock:
            self.stats["requests"] += 1
            if status >= 400:
                self.stats["errors"] += 1

    def close(self) -> None:
        """Stop polling, then unload every version (their queued requests finish first)."""
        self._stop.set()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join()
        with self._lock:
            everything = list(self.versions.values()) + self._retiring
            self.versions, self._retiring = {}, []
        for served in everything:
            served.close()


def _check_export_base(base: Path) -> None:
    if not base.is_dir():
        raise NmtError(f"{base}: export directory not found")
    if (base / "saved_model.pb").is_file():
        raise NmtError(
            f"{base}: is a version directory; pass its parent (the export base that "
            "holds the numbered versions)"
        )


def _version_status(version: int, state: str, error: str) -> dict[str, Any]:
    code = "UNKNOWN" if error else "OK"
    return {
        "version": str(version),
        "state": state,
        "status": {"error_code": code, "error_message": error},
    }
