"""Greedy soup (Wortsman et al. 2022, "Model soups", Recipe 1): rank the ingredients by held-out accuracy, start
the soup with the best one, and add each next one only if the uniform average with it scores at least as well
on the held-out set. The soup's held-out accuracy can therefore never be below its best ingredient's.

Checkpoints are read again when their turn comes rather than held in memory: the peak is a few copies of one
model whatever the number of ingredients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from clipctl.soup.averaging import WeightedSum
from clipctl.soup.ingredients import Ingredient, check_same_architecture

Score = Callable[[dict[str, torch.Tensor], str], float]


@dataclass
class GreedyStep:
    checkpoint: str
    top1: float  # the checkpoint alone
    soup_top1: float  # the soup after this step (with the checkpoint if kept)
    kept: bool


@dataclass
class GreedySoup:
    state_dict: dict[str, torch.Tensor]
    top1: float
    label: str  # under which the final soup was scored: the best checkpoint's name, or its step's label
    steps: list[GreedyStep] = field(default_factory=list)

    @property
    def kept(self) -> list[str]:
        return [step.checkpoint for step in self.steps if step.kept]


def step_label(step: int, count: int) -> str:
    """How a candidate is named in its results document (unique per step)."""
    return f"greedy soup step {step} ({count} checkpoints)"


def greedy_soup(specs: Sequence[str], read: Callable[[str], Ingredient], score: Score) -> GreedySoup:
    """``read(spec)`` gives an ingredient, ``score(state_dict, label)`` its held-out accuracy. Ties in the ranking
    keep the command-line order; a candidate that ties the soup is kept (accuracy "does not drop")."""
    first: Ingredient | None = None
    alone: list[float] = []
    for spec in specs:
        ingredient = read(spec)
        if first is None:
            first = ingredient
        else:
            check_same_architecture(first, ingredient)
        alone.append(score(ingredient.state_dict, spec))
        del ingredient
    first = None  # only the ranking is needed now
    order = sorted(range(len(specs)), key=lambda i: (-alone[i], i))

    soup = WeightedSum()
    soup.add(read(specs[order[0]]).state_dict)
    soup_top1, label = alone[order[0]], specs[order[0]]
    steps = [GreedyStep(specs[order[0]], alone[order[0]], soup_top1, True)]
    for step, index in enumerate(order[1:], start=2):
        candidate = soup.copy()
        candidate.add(read(specs[index]).state_dict)
        candidate_label = step_label(step, candidate.count)
        candidate_top1 = score(candidate.result(candidate.count), candidate_label)
        kept = candidate_top1 >= soup_top1
        if kept:
            soup, soup_top1, label = candidate, candidate_top1, candidate_label
        steps.append(GreedyStep(specs[index], alone[index], soup_top1, kept))
    return GreedySoup(soup.result(soup.count), soup_top1, label, steps)
