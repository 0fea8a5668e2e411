"""The training cost estimate: counted without computing, without touching batch-norm statistics."""

from __future__ import annotations

import torch

from clipctl.api import create_model
from clipctl.models.stats import model_stats, training_gflops_per_sample


def test_training_cost_is_three_forwards_and_leaves_batch_norm_alone():
    model = create_model("tiny-RN-demo")
    model.train()
    stats = model_stats(create_model("tiny-RN-demo", device="meta"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cost = training_gflops_per_sample(model)
    assert cost is not None
    assert abs(cost - 3 * (stats.image_gflops + stats.text_gflops)) < 1e-3 * cost
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
