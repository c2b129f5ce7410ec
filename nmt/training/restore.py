"""Resuming: the newest readable checkpoint of DIR/checkpoints, and what of it still applies.

A checkpoint holds the data-pipeline position and (float16 runs) the loss scale. When the
data settings changed since it was written (`data_changes`, or another number of replicas:
the global batches differ) the pipeline starts afresh; when the precision changed between
float16 and another, the loss scale is not restored (`resume_plan`). A corrupt newest
checkpoint is named in a warning and the previous one used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from nmt import checkpoint_files, modeldir
from nmt.config import Config
from nmt.errors import CheckpointError
from nmt.training.setup import data_changes

Log = Callable[[str], None]


@dataclass(frozen=True)
class ResumePlan:
    data: bool = True  # restore the data-pipeline position
    loss_scale: bool = True  # restore the loss scale (when the checkpoint has one)
    notes: list[str] = field(default_factory=list)  # log lines saying what changed

    @property
    def partial(self) -> bool:
        return not (self.data and self.loss_scale)


def resume_plan(
    saved: Config, config: Config, saved_state: dict[str, Any], replicas: int, precision: str
) -> ResumePlan:
    """What of a checkpoint written under `saved` (and `saved_state`, its train_state.json)
    a run with `config`, `replicas` and `precision` restores."""
    changed = data_changes(saved, config)
    saved_replicas = saved_state.get("replicas")
    if saved_replicas not in (None, replicas):  # global batches differ
        changed.append(f"replicas: {saved_replicas} -> {replicas}")
    notes, data, loss_scale = [], True, True
    if changed:
        notes.append(
            f"data settings changed ({'; '.join(changed)}): the data pipeline starts "
            "afresh instead of resuming its position"
        )
        data = False
    saved_precision = saved_state.get("precision")
    float16 = precision == "mixed_float16"
    if saved_precision and (saved_precision == "mixed_float16") != float16:
        notes.append(f"precision changed ({saved_precision} -> {precision})")
        loss_scale = False  # float16 runs save a loss scale, others do not
    return ResumePlan(data, loss_scale, notes)


def restore(trainer, model_dir: Path, saved: Optional[Config], log: Log) -> Optional[Path]:
    """Restore `trainer` (a `training.step.Trainer`) from the newest valid checkpoint of
    DIR/checkpoints; returns its prefix (None when there is none). The chief first removes
    what an interrupted write left behind. `saved`: the config DIR held before this run."""
    checkpoints_dir = model_dir / modeldir.CHECKPOINTS_DIR
    if trainer.cluster.is_chief:
        removed = checkpoint_files.remove_leftovers(model_dir)
        if removed:
            names = ", ".join(str(p.relative_to(model_dir)) for p in removed)
            log(f"removed what an interrupted write left behind: {names}")
    prefixes = checkpoint_files.list_checkpoints(checkpoints_dir)
    plan = ResumePlan()
    if prefixes and saved is not None:
        saved_state = modeldir.read_train_state(model_dir)
        replicas = trainer.cluster.num_replicas
        plan = resume_plan(saved, trainer.config, saved_state, replicas, trainer.precision)
        for note in plan.notes:
            log(note)
    checkpoint = trainer.checkpoint_for(data=plan.data, loss_scale=plan.loss_scale)
    for prefix in reversed(prefixes):
        try:
            checkpoint_files.restore_checkpoint(checkpoint, prefix, partial=plan.partial)
        except CheckpointError as e:
            older = "; trying the previous one" if prefix != prefixes[0] else ""
            log(f"nmt: warning: {e}{older}")
            continue
        log(f"resumed from {prefix} (step {int(trainer.state.step.numpy())})")
        return prefix
    if prefixes:
        raise CheckpointError(
            f"{checkpoints_dir}: no readable checkpoint among "
            f"{', '.join(p.name for p in prefixes)}; remove them to start again"
        )
    return None
