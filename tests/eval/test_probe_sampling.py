"""Few-shot samples and the held-out split: seeded, stratified, and loud when a class is too small."""

import pytest
import torch

from clipctl.errors import ClipctlError
from clipctl.eval.probe_sampling import sample_few_shot, split_held_out

LABELS = torch.tensor([0] * 10 + [1] * 7 + [2] * 4 + [3] * 1)


def test_few_shot_takes_k_per_class_and_is_deterministic_per_seed():
    chosen = sample_few_shot(LABELS[:21], 4, seed=0)
    assert torch.bincount(LABELS[chosen]).tolist() == [4, 4, 4]
    assert torch.equal(chosen, sample_few_shot(LABELS[:21], 4, seed=0))
    assert not torch.equal(chosen, sample_few_shot(LABELS[:21], 4, seed=1))


def test_few_shot_names_a_class_with_too_few_images():
    with pytest.raises(ClipctlError, match="class 'dog' has only 1 training image"):
        sample_few_shot(LABELS, 2, seed=0, classes=["a", "b", "c", "dog"])


def test_split_is_stratified_and_keeps_every_class_trainable():
    fit, held = split_held_out(LABELS, 0.2, seed=0)
    assert torch.bincount(LABELS[held], minlength=4).tolist() == [2, 1, 1, 0]  # 20% rounded, at least one
    assert torch.bincount(LABELS[fit], minlength=4).tolist() == [8, 6, 3, 1]  # a class of one stays to fit
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(len(LABELS)))
    again = split_held_out(LABELS, 0.2, seed=0)
    assert torch.equal(fit, again[0]) and torch.equal(held, again[1])
