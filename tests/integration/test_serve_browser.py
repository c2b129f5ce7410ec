"""The page at `/` of `nmt serve` in headless Chromium: type a sentence, read the translation.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages ending in NUL on file descriptors 3 and 4), so the test needs nothing but the
browser. Without one it is skipped; `scripts/install_browser.sh` (run by scripts/test.sh)
installs it where the machine allows (`apt-get install -y chromium` on Debian or Ubuntu);
NMT_CHROMIUM names another binary.

Uses the session's tiny export (tests/unit/test_export.py `make_tiny_export`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.export import make_tiny_export

SENTENCE = "ein Hund läuft über die grüne Wiese"


def _chromium() -> str | None:
    wanted = os.environ.get("NMT_CHROMIUM")
    if wanted:
        return shutil.which(wanted) or (wanted if Path(wanted).is_file() else None)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, binary: str, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds_3_and_4():  # in the child: the browser reads fd 3 and writes fd 4
            read, write = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-dev-shm-usage", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=fds_3_and_4, pass_fds=(3, 4),
        )  # fmt: skip
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, *, timeout: float = 60) -> dict:
        """The result of one DevTools command (events before it are dropped)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited: {self.proc.stderr.read()[-2000:]!r}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120):
        """The value of `expression` once it is truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"never true: {expression}")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = _chromium()
    if binary is None:
        pytest.skip(
            "no Chromium found (install it with `apt-get install -y chromium`, or set "
            "NMT_CHROMIUM to a Chromium or Chrome binary)"
        )
    opened = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    """`nmt serve`'s app behind HTTP on a free loopback port, model name "demo"."""
    from nmt.serve import ModelServer, make_http_server, stop_http_server

    tiny = make_tiny_export(tmp_path_factory.getbasetemp())
    app = ModelServer(tiny.export_base, "demo", poll_seconds=0, log=None)
    httpd = make_http_server(app, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{httpd.server_address[1]}"
    stop_http_server(httpd)
    thread.join(timeout=60)
    app.close()


def test_page_translates_what_is_typed(browser, page_server):
    from nmt.constants import ATTENTION_SIGNATURE

    app, url = page_server
    expected = app.predict("demo", None, json.dumps({"instances": [SENTENCE]}).encode())
    translation = expected["predictions"][0]["translation"]

    browser.open(url + "/")
    assert browser.wait_for("document.readyState === 'complete' && document.title") == (
        "nmt serve: demo"
    )
    browser.wait_for("!document.getElementById('about').textContent.startsWith('Loading')")
    browser.evaluate("document.getElementById('source').focus()")
    browser.send("Input.insertText", {"text": SENTENCE})
    browser.evaluate("document.getElementById('translate').click()")
    shown = browser.wait_for(
        "document.getElementById('status').textContent.startsWith('done') && "
        "Array.from(document.querySelectorAll('#translations .translation'), "
        "e => e.textContent)"
    )
    assert shown == [translation]
    assert browser.evaluate("document.getElementById('status').className") == ""

    with app.serving("demo") as served:
        has_attention = ATTENTION_SIGNATURE in served.signatures
    if has_attention:  # one row per target piece, one column per source piece and EOS
        rows = browser.wait_for("document.getElementById('attention').dataset.rows")
        assert int(rows) >= 1
        assert int(browser.evaluate("document.getElementById('attention').dataset.columns")) > 1
    else:
        note = browser.wait_for("document.getElementById('attention-note').textContent")
        assert f"no {ATTENTION_SIGNATURE} signature" in note
