"""The TensorFlow side of training: `Trainer` builds the model, optimizer, data iterator and
checkpoint objects of one run, compiles the train step, and evaluates on the dev set.

It holds no loop and writes nothing: `training.run.Run` drives it (steps, evaluations,
checkpoints, logs). The train step and the distribution scheme are described in the
`nmt.training` docstring (sections 2, 3 and 6).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from nmt import checkpoints as ckpt
from nmt.config import Config
from nmt.training.cluster import Cluster
from nmt.training.optim import clip_to_global_norm, learning_rate_at, make_optimizer
from nmt.training.state import State

Log = Callable[[str], None]


def seed_generator_states(model) -> list:
    """Dropout RNG states: in `model.variables` but not in `model.weights` (nor checkpointed
    with them), so saved explicitly to make a resumed run draw the same dropout masks."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class Trainer:
    """Model, optimizer, data and compiled steps of one run (see the module docstring)."""

    def __init__(self, config: Config, model_dir: Path, cluster: Cluster, log: Log):
        self.config = config
        self.model_dir = model_dir
        self.cluster = cluster
        self.log = log
        self.train_cfg = config.train

    # ---- set-up

    def build(self, vocab, precision: str) -> None:
        import keras

        cfg, strategy = self.config, self.cluster.strategy
        self.vocab = vocab
        self.precision = precision
        self.loss_scaling = precision == "mixed_float16"
        keras.utils.set_random_seed(cfg.train.seed)
        with strategy.scope():
            self.model = ckpt.build_model(cfg, vocab)
            self.model.decoder.loop_jit = cfg.train.decoder_loop_jit
            self.optimizer = make_optimizer(cfg.train, loss_scaling=self.loss_scaling)
            self.optimizer.build(self.model.trainable_variables)
            self.state = State()
        self.rng_states = seed_generator_states(self.model)

        self._build_dataset()
        self._checkpoint_objects()
        self.checkpoint = self.checkpoint_for()
        self.best_checkpoint = ckpt.inference_checkpoint(self.model, self.state.step)
        self.train_step = self._make_train_step()
        self._broadcast_fn = None

    def _build_dataset(self) -> None:
        """The training pipeline (global batches: batch_tokens x replicas) and its iterator."""
        import tensorflow as tf

        from nmt.data import PipelineStats, make_training_dataset

        cfg, vocab = self.config, self.vocab
        self.stats = PipelineStats()
        data_config = dataclasses.replace(
            cfg.data, batch_tokens=cfg.data.batch_tokens * self.cluster.num_replicas
        )
        dataset = make_training_dataset(
            cfg.data.train_source,
            cfg.data.train_target,
            vocab,
            data_config,
            seed=cfg.train.seed,
            stats=self.stats,
            check_files=False,
        )
        options = tf.data.Options()
        # The pipeline's counters are variables; they are checkpointed separately.
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
        self.dataset = dataset.with_options(options)
        self.iterator = iter(self.dataset)

    def _checkpoint_objects(self) -> None:
        """What a training checkpoint holds: the model, optimizer slots, step and state, RNG
        states, the loss scale (float16) and the data position with the pipeline counters."""
        import tensorflow as tf

        inner = self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer
        own = len(self.optimizer.variables) - len(inner.variables)  # the loss scale's state
        self._objects = {
            "model": ckpt.model_checkpoint(self.model),
            "optimizer": ckpt.variables_checkpoint(inner.variables),
            "step": self.state.step,
            "state": self.state.checkpoint(),
            "rng": tf.train.Checkpoint(**{f"s{i}": v for i, v in enumerate(self.rng_states)}),
        }
        if self.loss_scaling:
            self._objects["loss_scale"] = ckpt.variables_checkpoint(self.optimizer.variables[:own])
        self._data_objects = {
            "data": self.iterator,
            "pipeline": tf.train.Checkpoint(
                pairs_read=self.stats.pairs_read,
                empty_skipped=self.stats.empty_skipped,
                too_long_dropped=self.stats.too_long_dropped,
            ),
        }

    def checkpoint_for(self, data: bool = True, loss_scale: bool = True):
        """The training checkpoint, optionally without the data position or loss scale."""
        import tensorflow as tf

        objects = dict(self._objects)
        if not loss_scale:
            objects.pop("loss_scale", None)
        if data:
            objects.update(self._data_objects)
        return tf.train.Checkpoint(**objects)

    def _make_train_step(self):  # ~80 lines: its closures share the model's objects
        import tensorflow as tf

        from nmt.constants import PAD_ID
        from nmt.layers.attention import coverage_penalty
        from nmt.model import sequence_loss

        model, optimizer, state = self.model, self.optimizer, self.state
        strategy, train_cfg = self.cluster.strategy, self.train_cfg
        loss_scaling = self.loss_scaling
        variables = model.trainable_variables

        coverage = train_cfg.coverage_loss

        def forward_backward(source, target_in, target_out, total_tokens):
            # Logits at the non-pad target positions only: the output layer and the loss skip
            # the padding (a dynamic shape, so not under train.jit's XLA).
            real = target_out != PAD_ID  # (B, T)
            positions = None if train_cfg.jit else real
            labels = target_out if positions is None else tf.boolean_mask(target_out, positions)
            with tf.GradientTape() as tape:
                if coverage:
                    logits, weights = model(
                        (source, target_in),
                        training=True,
                        return_attention=True,
                        positions=positions,
                    )
                else:
                    logits = model((source, target_in), training=True, positions=positions)
                loss_sum, _ = sequence_loss(labels, logits, train_cfg.label_smoothing)
                objective = loss_sum  # the logged loss stays the cross-entropy
                if coverage:
                    penalty = coverage_penalty(weights, source != PAD_ID, real)
                    objective = loss_sum + coverage * penalty
                loss = objective / total_tokens
                if loss_scaling:
                    loss = optimizer.scale_loss(loss)
            grads = tape.gradient(loss, variables)
            return loss_sum, grads

        if train_cfg.jit:
            forward_backward = tf.function(forward_backward, jit_compile=True)

        def replica_step(source, target_in, target_out, total_tokens):
            ctx = tf.distribute.get_replica_context()
            replicas = ctx.num_replicas_in_sync
            if replicas > 1:  # this replica's rows of the global batch
                rows = tf.shape(source)[0]
                r = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
                lo, hi = rows * r // replicas, rows * (r + 1) // replicas
                source = source[lo:hi]  # (B_r, S)
                target_in, target_out = target_in[lo:hi], target_out[lo:hi]  # (B_r, T)
            loss_sum, grads = forward_backward(source, target_in, target_out, total_tokens)
            # Embedding gradients come as IndexedSlices with repeated rows; their global norm
            # (and so the clipping) would be wrong without summing the repeats. Adam updates
            # the whole matrix anyway.
            grads = [tf.convert_to_tensor(g) for g in grads]
            if replicas > 1:
                grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            norm = tf.linalg.global_norm(grads)  # () of the summed gradient
            if loss_scaling:
                norm = norm / tf.cast(optimizer.dynamic_scale, norm.dtype)
            grads = clip_to_global_norm(grads, norm, train_cfg.clip_norm)
            if replicas > 1:  # the optimizer sums over replicas again
                grads = [g / tf.cast(replicas, g.dtype) for g in grads]
            optimizer.apply(grads, variables)
            return loss_sum, norm

        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec, spec])
        def train_step(source, target_in, target_out):
            lr = learning_rate_at(state.step, state.lr_factor, train_cfg)
            optimizer.learning_rate.assign(lr)
            total = tf.cast(tf.math.count_nonzero(target_out), tf.float32)  # () global batch
            source_tokens = tf.cast(tf.math.count_nonzero(source), tf.float32)  # ()
            loss_sum, norm = strategy.run(replica_step, args=(source, target_in, target_out, total))
            loss_sum = strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None)
            norm = strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None)
            loss = loss_sum / tf.maximum(total, 1.0)
            finite = tf.math.is_finite(loss)
            streak = tf.where(finite, tf.constant(0, tf.int64), state.nonfinite_streak + 1)
            state.nonfinite_streak.assign(streak)
            state.worst_streak.assign(tf.maximum(state.worst_streak, streak))
            state.step.assign_add(1)
            return loss, total + source_tokens, lr, norm

        return train_step

    # ---- validation

    def build_validation(self) -> None:
        import tensorflow as tf

        from nmt.constants import PAD_ID
        from nmt.data import iter_lines, make_eval_dataset
        from nmt.layers.attention import attention_health
        from nmt.model import sequence_loss
        from nmt.translator import Translator

        cfg = self.config
        self.has_dev = bool(cfg.data.dev_source)
        if not self.has_dev:
            return
        model = self.model
        self.dev_dataset = make_eval_dataset(
            cfg.data.dev_source, cfg.data.dev_target, self.vocab, cfg.data, check_files=False
        )
        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec, spec, spec])
        def dev_loss(source, target_in, target_out):
            positions = target_out != PAD_ID  # (B, T) logits at the real target words only
            logits, weights = model(
                (source, target_in), training=False, return_attention=True, positions=positions
            )
            health = attention_health(weights, source != PAD_ID, positions)
            return (*sequence_loss(tf.boolean_mask(target_out, positions), logits, 0.0), *health)

        self.dev_loss_fn = dev_loss
        self.dev_sources = [text for _, text in iter_lines(cfg.data.dev_source)]
        self.dev_references = [text for _, text in iter_lines(cfg.data.dev_target)]
        self.translator = Translator(model, self.vocab, cfg.decode, warn=self.log)

    def evaluate(self) -> dict[str, float]:
        """Dev loss, perplexity and (optionally) greedy BLEU; the chief's values everywhere."""
        from nmt.evaluation import bleu

        values = [math.nan] * 7
        if self.cluster.is_chief:
            # loss, tokens, entropy, final mass, uniform entropy, peak share, count
            sums = [0.0] * 7
            for (source, target_in), target_out in self.dev_dataset:
                batch = self.dev_loss_fn(source, target_in, target_out)
                sums = [total + float(value) for total, value in zip(sums, batch, strict=True)]
            loss = sums[0] / max(sums[1], 1.0)
            count = max(sums[6], 1.0)
            values[:6] = [loss, math.exp(min(loss, 700.0)), *(v / count for v in sums[2:6])]
            if self.train_cfg.eval_bleu:
                hyps = self.translator.translate(self.dev_sources, beam_size=1)
                values[6] = float(bleu(hyps, self.dev_references).score)
        values = self.broadcast(values)
        result = {
            "dev_loss": values[0],
            "dev_perplexity": values[1],
            "attention_entropy": values[2],
            "attention_final_mass": values[3],
            "attention_uniform_entropy": values[4],
            "attention_peak": values[5],
        }
        if self.train_cfg.eval_bleu:
            result["bleu"] = values[6]
        return result

    def broadcast(self, values: list[float]) -> list[float]:
        """The chief's `values` on every worker (identity in one process)."""
        if self.cluster.num_workers <= 1:
            return values
        import numpy as np
        import tensorflow as tf

        strategy = self.cluster.strategy
        if self._broadcast_fn is None:

            @tf.function
            def fn(v):
                def replica(v):
                    ctx = tf.distribute.get_replica_context()
                    mine = tf.equal(ctx.replica_id_in_sync_group, 0)  # replica 0: the chief
                    return ctx.all_reduce(
                        tf.distribute.ReduceOp.SUM, tf.where(mine, v, tf.zeros_like(v))
                    )

                return strategy.run(replica, args=(v,))

            self._broadcast_fn = fn
        out = self._broadcast_fn(tf.constant(np.asarray(values, np.float32)))
        return [float(x) for x in strategy.experimental_local_results(out)[0].numpy()]
