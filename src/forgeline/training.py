"""Pieces of a Hugging Face ``Trainer`` run that every task which fine-tunes a pretrained model
(text and token classification, chat) sets up the same way."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import (
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedModel,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from forgeline.config.training import TrainingConfig
from forgeline.errors import ConfigError
from forgeline.tasks.base import Notify


class TrainingProgress(TrainerCallback):
    """One progress bar for training and a line per epoch with the validation scores.

    Replaces Trainer's ProgressCallback, which also prints every raw log dictionary.
    ``scores`` maps Trainer's metric keys (``eval_macro_f1``) to the names the user reads.
    """

    def __init__(self, scores: dict[str, str]) -> None:
        self._scores = scores
        self._bar: tqdm[Any] | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._bar = tqdm(total=state.max_steps, desc="training", unit="step", dynamic_ncols=True)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if metrics and self._bar is not None:
            scores = ", ".join(
                f"{name} {metrics.get(key, 0):.4f}" for key, name in self._scores.items()
            )
            self._bar.write(f"epoch {state.epoch:.0f}: validation {scores}")

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._bar is not None:
            self._bar.close()


def use_cpu(choice: str) -> bool:
    """Whether to train on the CPU only, for ``training.device`` (auto, cpu or cuda)."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: cuda requested but no CUDA device is available")
    return choice == "cpu" or not torch.cuda.is_available()


class KeepBestWeights(TrainerCallback):
    """Keeps a copy of the trainable weights of the best evaluation so far in memory and puts
    them back in the model when training ends.

    Instead of Trainer's ``load_best_model_at_end``, which needs a checkpoint on disk every
    epoch (weights and optimizer state: about three times the model) only to read one back.
    Only parameters that train are copied: all of an encoder being fine-tuned, only the
    adapters of a LoRA run (the frozen base never changes).
    """

    def __init__(self, metric_key: str, higher_is_better: bool = True) -> None:
        self._metric_key = metric_key
        self._sign = 1.0 if higher_is_better else -1.0
        self._best: dict[str, torch.Tensor] | None = None
        self.best_score: float | None = None
        self.best_epoch: float | None = None

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        score = (metrics or {}).get(self._metric_key)
        model = kwargs.get("model")
        if score is None or model is None:
            return
        if self.best_score is None or self._sign * (score - self.best_score) > 0:
            self.best_score, self.best_epoch = score, state.epoch
            self._best = {
                name: value.detach().to("cpu", copy=True)
                for name, value in model.named_parameters()
                if value.requires_grad
            }

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model = kwargs.get("model")
        if self._best is not None and model is not None:
            model.load_state_dict(self._best, strict=False)


class EarlyStopping(EarlyStoppingCallback):
    """Trainer's early stopping without its warning that the best model is not loaded at the
    end: :class:`KeepBestWeights` does that."""

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if args.metric_for_best_model is None:
            raise ValueError("early stopping needs metric_for_best_model")


@dataclass(frozen=True)
class Metric:
    """The validation score that picks the best epoch: its key in ``compute_metrics``'s result
    (``macro_f1``) and its name for people (``macro-F1``)."""

    key: str
    name: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class FineTuned:
    model: PreTrainedModel
    """With the weights of the best validation epoch, in evaluation mode."""
    seconds: float
    epochs_run: float
    best_score: float


def fine_tune(
    model: PreTrainedModel,
    settings: TrainingConfig,
    epochs: float,
    data: tuple[Dataset[Any], Dataset[Any]],
    collator: Any,
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None,
    metric: Metric,
    notify: Notify,
    eval_batch_size: int | None = None,
) -> FineTuned:
    """Train on ``data`` (train, validation) with HF ``Trainer`` as every task does:
    length-grouped batches with dynamic padding (far less padding, about 4x faster on short
    texts), linear decay after warm-up, an evaluation per epoch, early stopping on ``metric``
    and the best epoch's weights at the end. Without ``compute_metrics`` the metric is the
    validation ``loss`` and no logits are gathered (a language model's would not fit in
    memory: vocabulary x tokens x examples). Validation batches hold ``eval_batch_size`` examples
    (default: at least 64, for encoders whose logits are small)."""
    train_set, validation_set = data
    work = tempfile.mkdtemp(prefix="forgeline-train-")
    best = KeepBestWeights(f"eval_{metric.key}", metric.higher_is_better)
    try:
        args = TrainingArguments(
            output_dir=work,
            num_train_epochs=epochs,
            learning_rate=settings.learning_rate,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=eval_batch_size or max(64, settings.batch_size),
            warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of all steps
            weight_decay=settings.weight_decay,
            lr_scheduler_type="linear",
            train_sampling_strategy="group_by_length",
            eval_strategy="epoch",
            save_strategy="no",  # the best weights are kept in memory (KeepBestWeights)
            metric_for_best_model=metric.key,
            prediction_loss_only=compute_metrics is None,
            greater_is_better=metric.higher_is_better,
            logging_strategy="no",
            report_to=[],
            seed=settings.seed,
            data_seed=settings.seed,
            use_cpu=use_cpu(settings.device),
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=validation_set,
            data_collator=collator,
            compute_metrics=compute_metrics,
            callbacks=[
                EarlyStopping(early_stopping_patience=settings.early_stopping_patience),
                best,
                TrainingProgress({f"eval_{metric.key}": metric.name, "eval_loss": "loss"}),
            ],
        )
        trainer.remove_callback(ProgressCallback)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    epochs_run = float(trainer.state.epoch or 0)
    if epochs_run < epochs - 1e-6:
        notify(
            f"stopped early after epoch {epochs_run:.0f} of {epochs:g}: validation "
            f"{metric.name} did not improve for {settings.early_stopping_patience} epoch(s); "
            f"keeping epoch {best.best_epoch or 0:.0f} ({metric.name} {best.best_score or 0:.4f})"
        )
    tuned = cast(PreTrainedModel, trainer.model)
    tuned.eval()
    return FineTuned(tuned, seconds, epochs_run, float(best.best_score or 0.0))
