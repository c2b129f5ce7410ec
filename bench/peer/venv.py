"""The peer's own venv: OpenNMT-tf 2.32 pins TensorFlow 2.12, so it runs from `PEER_VENV`
(created by `ensure_peer_venv` when `onmt-main` is missing) as a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from bench.peer.base import PEER_REQUIREMENT, PEER_VENV, PeerError, _onmt_main


def ensure_peer_venv(venv: Path = PEER_VENV, log=print) -> Path:
    """Path of `onmt-main` in `venv`; creates the venv and installs OpenNMT-tf when missing.

    Uses this machine's `python3.11` (TensorFlow 2.12, which opennmt-tf 2.32 resolves to, has no
    wheels for newer Pythons). Raises SystemExit with a one-line message when creation fails; a
    venv directory created by a failed attempt is removed.
    """
    venv = Path(venv).expanduser()
    onmt_main = _onmt_main(venv)
    if onmt_main.exists():
        return onmt_main
    python = shutil.which("python3.11")
    if python is None:
        raise SystemExit(
            f"bench_peer: python3.11 not found on PATH; it is needed to create {venv} "
            f'(python3.11 -m venv {venv} && {venv}/bin/pip install "{PEER_REQUIREMENT}")'
        )
    created = not venv.exists()
    steps = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", PEER_REQUIREMENT],
    ]
    for command in steps:
        log(f"bench_peer: {' '.join(command)}")
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            if created:
                shutil.rmtree(venv, ignore_errors=True)
            lines = [line for line in (result.stderr or result.stdout).splitlines() if line]
            reason = lines[-1] if lines else f"exit status {result.returncode}"
            raise SystemExit(f"bench_peer: creating {venv} failed at `{command[0]}`: {reason}")
    if not onmt_main.exists():
        raise SystemExit(f"bench_peer: {onmt_main} missing after installing {PEER_REQUIREMENT}")
    log(f"bench_peer: installed {peer_versions(venv)}")
    return onmt_main


def peer_versions(venv: Path = PEER_VENV) -> dict:
    """Installed versions in the peer venv: python, opennmt-tf, tensorflow, tensorflow-addons."""
    code = (
        "import importlib.metadata as m, json, platform\n"
        "v = {'python': platform.python_version()}\n"
        "for name in ('opennmt-tf', 'tensorflow', 'tensorflow-addons'):\n"
        "    try:\n"
        "        v[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        v[name] = None\n"
        "print(json.dumps(v))\n"
    )
    python = Path(venv).expanduser() / "bin" / "python"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise PeerError(f"{python}: cannot read package versions: {result.stderr.strip()}")
    return json.loads(result.stdout)
