"""The optimizer step: accumulation gives the big-batch gradients, the temperature is clamped, weight decay
skips gains/biases/logit scale, and the schedules have the documented shape."""

from __future__ import annotations

import math

import pytest
import torch

from clipctl.api import create_model
from clipctl.config.run import resolve_run_config
from clipctl.models.losses import ClipLoss
from clipctl.runtime import plan_precision
from clipctl.train.optim import Schedule, build_optimizer, param_groups
from clipctl.train.step import LOGIT_SCALE_MAX, train_step
from tests.train.engine_helpers import write_tiny_model


@pytest.fixture(scope="module")
def model_json(tmp_path_factory) -> str:
    return write_tiny_model(tmp_path_factory.mktemp("model"))


def _batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    texts = torch.randint(1, 49406, (n, 16), generator=g)
    texts[:, -1] = 49407
    return torch.randn(n, 3, 32, 32, generator=g), texts


def _grads_after(model, micro, clip=None, loss_fn=None):
    grads = {}

    def capture():
        grads.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})

    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    result = train_step(
        model,
        micro,
        loss_fn or ClipLoss(),
        opt,
        plan=plan_precision("fp32", torch.device("cpu")),
        device=torch.device("cpu"),
        grad_clip_norm=clip,
        before_optimizer_step=capture,
    )
    return grads, result


def test_accumulated_step_has_the_gradients_of_one_big_batch(model_json):
    torch.manual_seed(0)
    model = create_model(model_json, output_dict=True)
    images, texts = _batch(12)
    big, _ = _grads_after(model, [(images, texts)])
    accumulated, _ = _grads_after(
        model, [(images[:4], texts[:4]), (images[4:8], texts[4:8]), (images[8:], texts[8:])]
    )
    for name, grad in big.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_accumulated_multi_positive_step_finds_repeats_across_micro_batches(model_json):
    torch.manual_seed(0)
    model = create_model(model_json, output_dict=True)
    images, texts = _batch(12)
    texts[7] = texts[1]  # a repeated caption across micro-batches
    # labels join different captions across micro-batches (identical captions alone leave the softmax loss as
    # it is: their text features are identical too)
    labels = torch.tensor([0, 1, -1, -1, 2, -1, 2, -1, -1, 3, 0, 3])
    loss_fn = ClipLoss(multi_positive=True)
    big, result = _grads_after(model, [(images, texts, labels)], loss_fn=loss_fn)
    halves = [(images[:6], texts[:6], labels[:6]), (images[6:], texts[6:], labels[6:])]
    accumulated, _ = _grads_after(model, halves, loss_fn=loss_fn)
    for name, grad in big.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # the repeats matter: the standard loss gives another value
    _, plain = _grads_after(model, [(images, texts)])
    assert abs(float(plain.losses["loss"]) - float(result.losses["loss"])) > 1e-3


def test_logit_scale_is_clamped_after_the_step(model_json):
    model = create_model(model_json, output_dict=True)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    _grads_after(model, [_batch(4)])
    assert model.logit_scale.item() == pytest.approx(LOGIT_SCALE_MAX)


def test_no_weight_decay_on_gains_biases_and_logit_scale(model_json):
    model = create_model(model_json, output_dict=True)
    no_decay, decay = param_groups(model.named_parameters(), 0.2)
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert "logit_scale" in skipped and decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert any(n.endswith("ln_final.weight") for n in skipped) and any(n.endswith(".bias") for n in skipped)
    cfg = resolve_run_config(None, {"model": model_json, "wd": 0.2}, [])
    optimizer = build_optimizer(cfg, model)
    assert optimizer.defaults["betas"] == (0.9, 0.999)  # a JSON path, not a ViT name


def test_schedules():
    cos = Schedule("cosine", 1.0, warmup=10, total_steps=110)
    assert cos.lr_at(0) == pytest.approx(0.1) and cos.lr_at(9) == pytest.approx(1.0)
    assert cos.lr_at(60) == pytest.approx(0.5) and cos.lr_at(110) == pytest.approx(0.0, abs=1e-12)
    const = Schedule("const", 1.0, warmup=0, total_steps=50)
    assert const.lr_at(49) == 1.0
    cool = Schedule(
        "const-cooldown",
        1.0,
        warmup=0,
        total_steps=100,
        cooldown_steps=20,
        cooldown_power=2.0,
        cooldown_end=0.1,
    )
    assert cool.lr_at(79) == 1.0
    assert cool.lr_at(90) == pytest.approx(0.5**2 * 0.9 + 0.1)
    assert math.isclose(cool.lr_at(100), 0.1)
