"""One invocation of the training loop: `Run` resumes, steps, validates, saves and stops.

Who owns what:
- `training.step.Trainer`: the TensorFlow objects (model, optimizer, data iterator, the
  compiled train and dev steps, the checkpoint objects). It runs a step when told to.
- `Run` (here): the loop around it. It reads the step outputs back, logs and writes
  TensorBoard scalars (`training.metrics`), validates and keeps the best/plateau/early-
  stopping standing (`training.stopping.judge`), saves and prunes checkpoints
  (`training.keeping`), writes DIR/train_state.json (`training.state`) and stops
  (`training.stopping.StoppingRules`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from nmt import faults, interrupts, modeldir, progress
from nmt.config import Config
from nmt.errors import NmtError
from nmt.training import metrics
from nmt.training.cluster import Cluster
from nmt.training.keeping import CheckpointKeeper
from nmt.training.restore import restore
from nmt.training.state import Clock, StateFile, TrainResult, train_state_record
from nmt.training.step import Trainer
from nmt.training.stopping import StoppingRules, final_validation_due, judge

Log = Callable[[str], None]


class Run:
    """One invocation of the training loop (resume, loop, final checkpoint)."""

    def __init__(self, config, model_dir, cluster: Cluster, log: Log, vocab, precision,
                 file_stats, saved: Optional[Config]):  # fmt: skip
        self.config, self.model_dir, self.cluster, self.log = config, model_dir, cluster, log
        self.saved_config = saved
        self.train_cfg = config.train
        self.trainer = Trainer(config, model_dir, cluster, log)
        self.trainer.build(vocab, precision)
        self.trainer.build_validation()
        self.precision = precision
        self.precision_reason = "train.precision"
        self.file_stats = file_stats
        self.keeper = CheckpointKeeper(model_dir, cluster, config.train.keep_checkpoints)
        self.board = metrics.TensorBoard(model_dir, cluster.is_chief, log)
        self.state_file = StateFile(model_dir, cluster.is_chief)
        self.clock = Clock()
        self.history: list[dict] = []  # evaluations of this model dir (train_state.json)
        self.losses: list[float] = []
        self.evaluations: list[dict] = []  # evaluations made in this run
        self.pending: list = []  # step outputs not yet read back (avoids a sync every step)
        self.window = metrics.Window()  # for tokens/s between log lines
        self.save_seconds: list[float] = []  # how long each checkpoint took (for the ETA)
        self.last_checkpoint: Optional[Path] = None
        self.saved_step = -1  # the step of the newest checkpoint of this model dir

    # ---- the loop

    def loop(self, interrupt: Optional[interrupts.StopRequest] = None) -> TrainResult:
        cfg = self.train_cfg
        interrupt = interrupt or interrupts.StopRequest()
        result = self._resume()
        self._log_start()
        step = result.start_step
        if step >= cfg.max_steps:
            self.log(f"already trained to step {step} (train.max_steps {cfg.max_steps})")
            return self._finish(result, step, "already_done")
        start = self.clock.start()
        rules = StoppingRules(
            cfg,
            start,
            num_workers=self.cluster.num_workers,
            broadcast=self.trainer.broadcast,
            requested=lambda: interrupt.requested,
        )
        self.window.reset(start)
        stop = None
        interrupt.arm()
        while stop is None and step < cfg.max_steps:
            step = self._step(step)
            boundary = rules.boundary(step)
            if self._log_due(step, boundary):
                self._log_progress(step, start, rules)
            stop = self._validate_and_save(step) or self._stop_rules(rules, boundary)
        result.signal = interrupt.signum if stop == "interrupted" else None
        return self._end(result, step, stop or "max_steps")

    def _step(self, step: int) -> int:
        """Run one train step (its outputs are read back later); returns the new step."""
        t = self.trainer
        (source, target_in), target_out = next(t.iterator)
        faults.fire(faults.STEP_START, step=step)
        self.pending.append(t.train_step(source, target_in, target_out))
        faults.fire(faults.STEP_END, step=step + 1)
        return step + 1

    def _validate_and_save(self, step: int) -> Optional[str]:
        """Evaluate and save when `step` is due; "early_stopping" to stop (then unsaved)."""
        t, cfg = self.trainer, self.train_cfg
        stop = None
        pause = time.perf_counter()
        if t.has_dev and step % cfg.eval_every == 0:
            self.flush_pending()
            if self.validate(step):
                stop = "early_stopping"
                self.log(f"early stopping: {cfg.early_stopping} evaluations without gain")
        if step % cfg.checkpoint_every == 0 and stop is None:
            self.save(step)
            if self.cluster.is_chief:
                self.log(f"saved {self.last_checkpoint}; data: {t.stats.summary()}")
        self.window.paused += time.perf_counter() - pause
        return stop

    def _stop_rules(self, rules: StoppingRules, boundary: bool) -> Optional[str]:
        stop = rules.after_step(boundary)
        if stop == "max_minutes":
            self.log(f"stopping: train.max_minutes ({self.train_cfg.max_minutes}) reached")
        return stop

    def _end(self, result: TrainResult, step: int, stop_reason: str) -> TrainResult:
        """After the loop: read back, a last evaluation and checkpoint when due."""
        t, cfg = self.trainer, self.train_cfg
        self.flush_pending()
        if final_validation_due(t.has_dev, stop_reason, step, result.start_step, cfg.eval_every):
            self.validate(step)  # so that `best` also considers the final weights
        if self.saved_step != step:
            self.save(step)
            self.log(f"saved {self.last_checkpoint}")
        result.last_checkpoint = self.last_checkpoint
        self.log(f"data: {t.stats.summary()}")
        return self._finish(result, step, stop_reason)

    # ---- resume and finish

    def _resume(self) -> TrainResult:
        """Restore the newest checkpoint and the history and clock of train_state.json."""
        t = self.trainer
        restored = restore(t, self.model_dir, self.saved_config, self.log)
        previous = self.state_file.read() if restored else {}
        start_step = int(t.state.step.numpy())
        # Keep the evaluation history up to the restored step.
        earlier = previous.get("evaluations", [])
        self.history = [e for e in earlier if e.get("step", 0) <= start_step]
        self.clock = Clock(float(previous.get("train_seconds", 0.0) or 0.0))
        if restored:
            self.last_checkpoint = self.model_dir / modeldir.CHECKPOINTS_DIR / restored.name
            self.saved_step = start_step
        return TrainResult(
            model_dir=self.model_dir,
            step=start_step,
            start_step=start_step,
            stop_reason="already_done",
            last_checkpoint=self.last_checkpoint,
            best_step=None,
            best_bleu=None,
            precision=self.precision,
            num_replicas=self.cluster.num_replicas,
        )

    def _finish(self, result: TrainResult, step: int, reason: str) -> TrainResult:
        standing = self.trainer.state.standing()
        result.step = step
        result.stop_reason = reason
        result.losses = list(self.losses)
        result.evaluations = list(self.evaluations)
        result.best_step = standing.best_step if standing.best_step >= 0 else None
        if self.train_cfg.eval_bleu and math.isfinite(standing.best_metric):
            result.best_bleu = standing.best_metric
        self.write_train_state(reason)
        self.board.flush(close=True)
        self.keeper.close()
        return result

    # ---- step outputs and progress lines

    def flush_pending(self) -> list[tuple[float, float, float, float]]:
        """Read back the queued step outputs; NmtError when the loss went non-finite."""
        out = [tuple(float(x) for x in values) for values in self.pending]
        self.pending.clear()
        self.losses.extend(o[0] for o in out)
        self.window.tokens += sum(o[1] for o in out)
        self.window.steps += len(out)
        state, scaling = self.trainer.state, self.trainer.loss_scaling
        worst = int(state.worst_streak.numpy())
        state.worst_streak.assign(int(state.nonfinite_streak.numpy()))
        allowed = self.train_cfg.max_nonfinite_steps if scaling else 0
        if worst > allowed:
            step = int(state.step.numpy())
            last = self.keeper.newest()
            kept = f"; the last good checkpoint is {last}" if last else ""
            hint = (
                " even with dynamic loss scaling"
                if scaling
                else " (try a lower train.learning_rate or train.clip_norm)"
            )
            raise NmtError(
                f"training diverged: the loss became NaN or infinite by step {step}{hint}{kept}"
            )
        return out

    def _log_due(self, step: int, boundary: bool) -> bool:
        """At log boundaries; a slow run (one worker) also every train.log_every_seconds."""
        cfg = self.train_cfg
        elapsed = self.window.elapsed(time.perf_counter())
        return boundary or (
            self.cluster.num_workers == 1
            and progress.log_due(step, cfg.log_every, cfg.log_every_seconds, elapsed)
        )

    def _log_progress(self, step: int, start: float, rules: StoppingRules) -> None:
        t, cfg = self.trainer, self.train_cfg
        outs = self.flush_pending()
        now = time.perf_counter()
        elapsed = self.window.elapsed(now)
        tokens_per_s = self.window.tokens / max(elapsed, 1e-9)
        steps_per_s = self.window.steps / max(elapsed, 1e-9)
        eta = self._eta(step, 1.0 / max(steps_per_s, 1e-9), rules.seconds_left(now))
        _, _, lr, norm = outs[-1]
        mean_loss = sum(o[0] for o in outs) / len(outs)
        self.log(
            f"{metrics.step_line(step, cfg.max_steps, mean_loss, lr, norm, tokens_per_s)} "
            f"elapsed {metrics.format_time(now - start)} eta {eta.text(metrics.format_time)}"
        )
        values = {
            "loss": mean_loss,
            "learning_rate": lr,
            "tokens_per_second": tokens_per_s,
            "grad_norm": norm,
        }
        if t.loss_scaling:
            values["loss_scale"] = float(t.optimizer.dynamic_scale.numpy())
        self.board.scalars("train", step, values)
        self.window.reset(now)

    def _eta(self, step: int, seconds_per_step: float, seconds_left) -> progress.Eta:
        """The rest of the run: steps, evaluations and checkpoints still to come."""
        cfg = self.train_cfg
        return progress.estimate_remaining(
            step,
            cfg.max_steps,
            seconds_per_step,
            eval_every=cfg.eval_every if self.trainer.has_dev else 0,
            eval_seconds=progress.mean([e["seconds"] for e in self.history if "seconds" in e]),
            checkpoint_every=cfg.checkpoint_every,
            checkpoint_seconds=progress.mean(self.save_seconds),
            seconds_left=seconds_left,
        )

    def _log_start(self) -> None:
        t, fs, workers = self.trainer, self.file_stats, self.cluster.num_workers
        parameters = sum(int(v.numpy().size) for v in t.model.trainable_variables)
        self.log(
            f"training {self.model_dir}: {self.cluster.num_replicas} replica(s)"
            f"{f' on {workers} workers' if workers > 1 else ''}, precision {self.precision} "
            f"({self.precision_reason}), "
            f"{parameters:,} parameters, {fs.lines} training pairs "
            f"({fs.empty_pairs} with an empty side)"
        )

    # ---- validation, checkpoints, state file

    def validate(self, step: int) -> bool:
        """Evaluate, update best/plateau/early-stopping state; True to stop early."""
        t, cfg = self.trainer, self.train_cfg
        start = time.perf_counter()
        result = t.evaluate()
        metric = result["bleu"] if cfg.eval_bleu else -result["dev_loss"]
        before = t.state.standing()
        verdict = judge(before, metric, step, cfg)
        t.state.set_standing(before, verdict.standing)
        if verdict.gain:
            self.keeper.save_best(t.best_checkpoint, step)
        if verdict.decayed:
            self.log(
                f"step {step}: no gain in {cfg.plateau_patience} evaluations; "
                f"learning rate x {cfg.decay_rate}"
            )
        entry = {
            "step": step,
            **result,
            "best": verdict.gain,
            "seconds": time.perf_counter() - start,
            "train_seconds": round(self.clock.train_seconds(), 3),
        }
        self.history.append(entry)
        self.evaluations.append(entry)
        best = verdict.standing.best_metric
        best_text = f"{best:.2f}" if cfg.eval_bleu else f"{-best:.4f}"
        self.log(
            metrics.eval_line(step, result, verdict.gain, best_text, verdict.standing.best_step)
        )
        warning = metrics.attention_warning(result)
        if warning:
            self.log(f"warning: step {step}: {warning}")
        self.board.scalars("dev", step, metrics.dev_scalars(result))
        self.write_train_state()
        return verdict.early_stop

    def save(self, step: int) -> Path:
        """Checkpoint at `step`, then the state file; returns the checkpoint's path."""
        self.flush_pending()  # never save after a non-finite loss
        start = time.perf_counter()
        self.last_checkpoint = self.keeper.save(self.trainer.checkpoint, step)
        self.saved_step = step
        self.write_train_state()
        self.board.flush()
        self.save_seconds.append(time.perf_counter() - start)
        return self.last_checkpoint

    def write_train_state(self, stop_reason: Optional[str] = None) -> None:
        if not self.state_file.is_chief:
            return
        s = self.trainer.state
        record = train_state_record(
            int(s.step.numpy()),
            s.standing(),
            eval_bleu=self.train_cfg.eval_bleu,
            evaluations=self.history,
            train_seconds=self.clock.train_seconds(),
            stop_reason=stop_reason,
            precision=self.precision,
            replicas=self.cluster.num_replicas,
        )
        self.state_file.write(record)
