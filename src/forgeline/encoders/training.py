"""Pieces of a Hugging Face ``Trainer`` run that every encoder task sets up the same way."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import (
    EarlyStoppingCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from forgeline.errors import ConfigError


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
    """Keeps a copy of the weights of the best evaluation so far in memory and puts them back
    in the model when training ends.

    Instead of Trainer's ``load_best_model_at_end``, which needs a checkpoint on disk every
    epoch (weights and optimizer state: about three times the model) only to read one back.
    """

    def __init__(self, metric_key: str) -> None:
        self._metric_key = metric_key
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
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, state.epoch
            self._best = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model = kwargs.get("model")
        if self._best is not None and model is not None:
            model.load_state_dict(self._best)


class EarlyStopping(EarlyStoppingCallback):
    """Trainer's early stopping without its warning that the best model is not loaded at the
    end: :class:`KeepBestWeights` does that."""

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if args.metric_for_best_model is None:
            raise ValueError("early stopping needs metric_for_best_model")
