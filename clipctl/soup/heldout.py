"""Zero-shot accuracy of many weights of one architecture on one held-out set, as greedy soups and WiSE-FT
sweeps need it: the model, its transform, its tokenizer and the data are set up once, and each candidate's
state dict is loaded into the same model.

The numbers are those `clipctl zeroshot --model M --pretrained FIRST --data VAL --classnames FILE` prints for
the same weights: the model is built the way that command builds it (with the first checkpoint, so the same
preprocessing), and scored by the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clipctl.errors import ClipctlError


@dataclass
class HeldOutOptions:
    """The held-out set and how to evaluate on it (the flags of `clipctl zeroshot --data`)."""

    data: str
    classnames: str | None = None
    templates: str | None = None
    split: str = "test"
    batch_size: int = 64
    workers: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    progress: bool = False


class HeldOutEvaluator:
    """Scores state dicts by held-out zero-shot top-1; every document is kept in ``documents`` by label."""

    def __init__(
        self, model: str, first_checkpoint: str | None, options: HeldOutOptions, *, weights_only: bool = True
    ):
        from clipctl.eval.loading import check_batch_size, plan_eval
        from clipctl.eval.zeroshot_job import collect_datasets

        check_batch_size(options.batch_size)
        self.device, self.plan = plan_eval(options.device, options.precision)
        # checked now, before any weights are read: a typo in --data costs a second
        self.datasets = collect_datasets(
            data=options.data,
            classnames=options.classnames,
            templates=options.templates,
            imagenet_val=None,
            imagenet_v2=None,
            split=options.split,
        )
        self.model_name, self.first_checkpoint = model, first_checkpoint
        self.options, self.weights_only = options, weights_only
        self.loaded: Any = None
        self.documents: dict[str, list[dict[str, Any]]] = {}

    def _model(self) -> Any:
        if self.loaded is None:
            from clipctl.eval.loading import load_model

            self.loaded = load_model(
                self.model_name, self.first_checkpoint, self.device, self.plan, weights_only=self.weights_only
            )
        return self.loaded

    def evaluate(self, state_dict: dict[str, Any], label: str) -> list[dict[str, Any]]:
        """The zero-shot results documents of ``state_dict`` (``pretrained`` set to ``label``)."""
        from clipctl.eval.zeroshot_job import ZeroShotOptions, evaluate_datasets
        from clipctl.soup.ingredients import Ingredient, adapt_to_model

        loaded = self._model()
        fitted = adapt_to_model(Ingredient(label, state_dict), loaded.model)
        loaded.model.load_state_dict(fitted.state_dict, strict=True)
        settings = ZeroShotOptions(
            model=self.model_name,
            batch_size=self.options.batch_size,
            workers=self.options.workers,
            device=self.options.device,
            precision=self.options.precision,
            progress=self.options.progress,
        )
        docs = evaluate_datasets(loaded, self.datasets, settings, label)
        self.documents[label] = docs
        return docs

    def top1(self, state_dict: dict[str, Any], label: str) -> float:
        return float(self.evaluate(state_dict, label)[0]["metrics"]["top1"])


def evaluation_model(model: str | None, first_checkpoint: str, what: str) -> tuple[str, str | None]:
    """``(model name, weights to build it with)`` for evaluating checkpoints: ``--model`` with the first
    checkpoint, or a Hub-layout checkpoint that names its own architecture."""
    from clipctl.soup.ingredients import hub_name

    hub = hub_name(first_checkpoint)
    if model:
        return model, None if hub else first_checkpoint
    if hub:
        return hub, None
    raise ClipctlError(f"{what} needs --model: the architecture the checkpoints are evaluated in")
