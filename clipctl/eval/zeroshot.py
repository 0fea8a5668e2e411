"""Zero-shot classifier weights: one averaged, normalised text embedding per class."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from clipctl.errors import ClipctlError

Template = str | Callable[[str], str]


def render_prompts(classnames: Sequence[str], templates: Sequence[Template]) -> list[str]:
    """Every template applied to every class name, class-major (all templates of class 0 first)."""
    prompts = []
    for name in classnames:
        for template in templates:
            # Our template files use "{c}"; OpenAI-style "{}" strings work too.
            prompts.append(template.format(name, c=name) if isinstance(template, str) else template(name))
    return prompts


def _batches(items: Sequence[str], size: int | None) -> Iterator[Sequence[str]]:
    size = size or len(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def build_zero_shot_classifier(
    model: Any,
    tokenizer: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[Template],
    num_classes_per_batch: int | None = 10,
    device: str | torch.device = "cpu",
    use_tqdm: bool = False,
) -> torch.Tensor:
    """A ``[embed_dim, num_classes]`` matrix; ``image_features @ classifier`` gives class scores.

    Each class's column is the mean of its L2-normalised prompt embeddings, normalised again.
    """
    if not classnames:
        raise ClipctlError("zero-shot classifier needs at least one class name")
    if not templates:
        raise ClipctlError("zero-shot classifier needs at least one prompt template")
    num_templates = len(templates)
    batches: Iterator[Sequence[str]] = _batches(list(classnames), num_classes_per_batch)
    if use_tqdm:
        from tqdm import tqdm

        per_batch = num_classes_per_batch or len(classnames)
        batches = tqdm(batches, total=-(-len(classnames) // per_batch), unit="batch")
    columns = []
    with torch.no_grad():
        for batch in batches:
            tokens = tokenizer(render_prompts(batch, templates)).to(device)
            embeddings = model.encode_text(tokens, normalize=True)
            per_class = embeddings.reshape(len(batch), num_templates, -1).mean(dim=1)
            columns.append((per_class / per_class.norm(dim=1, keepdim=True)).T)
    return torch.cat(columns, dim=1)
