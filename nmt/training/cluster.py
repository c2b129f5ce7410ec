"""Where training runs: the tf.distribute strategy, the chief, the thread pools."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from nmt.errors import ConfigError, NmtError
from nmt.fileio import make_temp_dir


@dataclass
class Cluster:
    strategy: Any
    is_chief: bool = True
    num_workers: int = 1
    task: str = "local"

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)


def _tf_config_tasks() -> tuple[int, Optional[str], Optional[int]]:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0, None, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {e}") from None
    cluster = value.get("cluster") or {}
    tasks = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    task = value.get("task") or {}
    return tasks, task.get("type"), task.get("index")


def make_cluster(strategy: Any = None) -> Cluster:
    """Pick the tf.distribute strategy: an explicit one, multi-worker, mirrored or default.

    `strategy` may be a tf.distribute.Strategy, "auto"/None (TF_CONFIG with several tasks ->
    MultiWorkerMirroredStrategy; several GPUs -> MirroredStrategy; else the default),
    "default", "mirrored" or "multi_worker". Must run before other TensorFlow work when
    multi-worker.
    """
    import tensorflow as tf

    tasks, task_type, task_index = _tf_config_tasks()
    if strategy is None or strategy == "auto":
        if tasks > 1:
            strategy = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            strategy = "mirrored"
        else:
            strategy = "default"
    if isinstance(strategy, str):
        if strategy == "default":
            strategy = tf.distribute.get_strategy()
        elif strategy == "mirrored":
            strategy = tf.distribute.MirroredStrategy()
        elif strategy == "multi_worker":
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            raise ConfigError(
                f"unknown strategy {strategy!r}: choose auto, default, mirrored or multi_worker"
            )
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resolver = strategy.cluster_resolver
        task_type, task_index = resolver.task_type, resolver.task_id
        spec = resolver.cluster_spec().as_dict()
        num_workers = sum(len(spec.get(k, [])) for k in ("chief", "worker"))
        has_chief = "chief" in spec
        is_chief = (
            task_type is None
            or task_type == "chief"
            or (task_type == "worker" and task_index == 0 and not has_chief)
        )
        return Cluster(strategy, is_chief, max(num_workers, 1), f"{task_type}:{task_index}")
    return Cluster(strategy)


def chief_temp_dir(cluster: Cluster, directory: Path) -> tuple[Path, Optional[Path]]:
    """Where this task writes checkpoints: DIR for the chief, a temporary dir for workers."""
    if cluster.is_chief:
        return directory, None
    temp = make_temp_dir(None, f"nmt-worker-{cluster.task.replace(':', '-')}-", private=True)
    return temp, temp


def set_threads(threads: int) -> None:
    """Size TensorFlow's intra- and inter-op thread pools; must run before any TF op."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {threads!r}")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as e:  # TensorFlow already started in this process
        raise NmtError(f"--threads: {e}") from None
