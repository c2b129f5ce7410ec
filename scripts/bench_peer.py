"""OpenNMT-tf's NMTSmallV1 on Multi30k beside nmt: the command line of bench/peer (the one
peer harness, also used by scripts/benchmark.py). See bench/peer/__init__.py for what it measures.

Usage (repository root):
    python scripts/bench_peer.py --pair en-de --steps 20 --workdir runs/bench/peer
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/bench_peer.py`: bench/ is beside nmt/
    sys.path.insert(0, str(REPO))

from bench.peer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
