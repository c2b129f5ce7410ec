"""Which checkpoints a training run keeps: DIR/checkpoints (the newest
`train.keep_checkpoints`) and DIR/best (the best evaluation's weights, one checkpoint).

Only the chief writes the model directory. Other workers write their checkpoints to a local
temporary directory and delete them at once, as the TF multi-worker guide prescribes (every
worker must take part in writing a checkpoint); `close` removes that directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from nmt import checkpoint_files, modeldir
from nmt.training.cluster import Cluster, chief_temp_dir


class CheckpointKeeper:
    def __init__(self, model_dir: Path, cluster: Cluster, keep: int):
        self.model_dir, self.is_chief, self.keep = model_dir, cluster.is_chief, keep
        self.listed_dir = model_dir / modeldir.CHECKPOINTS_DIR  # where the chief's are listed
        self.ckpt_dir, self.temp_dir = chief_temp_dir(cluster, self.listed_dir)
        self.best_dir = model_dir / modeldir.BEST_DIR if self.is_chief else self.temp_dir / "best"

    def save(self, checkpoint, step: int) -> Path:
        """Write ckpt-STEP and prune the older ones; returns its path in DIR/checkpoints."""
        prefix = checkpoint_files.write_checkpoint(checkpoint, self.ckpt_dir, step)
        if self.is_chief:
            checkpoint_files.prune_checkpoints(self.ckpt_dir, self.keep)
        else:
            checkpoint_files.delete_checkpoint(prefix)
        return self.listed_dir / prefix.name

    def save_best(self, checkpoint, step: int) -> None:
        """Replace DIR/best by ckpt-STEP."""
        prefix = checkpoint_files.write_checkpoint(checkpoint, self.best_dir, step)
        if self.is_chief:
            checkpoint_files.prune_checkpoints(self.best_dir, 1)
        else:
            checkpoint_files.delete_checkpoint(prefix)

    def newest(self) -> Optional[Path]:
        """The newest checkpoint listed in DIR/checkpoints (None without one)."""
        listed = checkpoint_files.list_checkpoints(self.listed_dir)
        return listed[-1] if listed else None

    def close(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
