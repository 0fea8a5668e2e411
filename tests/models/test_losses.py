"""Losses: single-process values against hand-written formulas and OpenCLIP, and distributed runs (gloo, CPU,
several processes) whose values and gradients must equal one process on the whole batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipctl.models.losses import ClipLoss, CoCaLoss, DistillClipLoss, LossSpec, SigLipLoss, create_loss
from tests.models.gloo_ranks import run_gloo_ranks

WORLD = 3  # three ranks so SigLIP's bidirectional exchange runs a real two-way step
PER_RANK = 4
DIM = 8


def _features(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = WORLD * PER_RANK
    return {
        "image": F.normalize(torch.randn(n, DIM, generator=g), dim=-1),
        "text": F.normalize(torch.randn(n, DIM, generator=g), dim=-1),
        "scale": torch.tensor(3.5),
        "bias": torch.tensor(-1.5),
    }


def _naive_clip(image, text, scale, bias=None):
    logits = scale * image @ text.T
    if bias is not None:
        logits = logits + bias
    labels = torch.arange(len(image))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _naive_siglip(image, text, scale, bias):
    logits = scale * image @ text.T + bias
    signs = 2 * torch.eye(len(image)) - 1
    return -F.logsigmoid(signs * logits).sum() / len(image)


def test_clip_loss_matches_naive_formula_with_and_without_bias():
    f = _features()
    assert torch.allclose(
        ClipLoss()(f["image"], f["text"], f["scale"]), _naive_clip(f["image"], f["text"], f["scale"])
    )
    with_bias = ClipLoss()(f["image"], f["text"], f["scale"], f["bias"])
    assert torch.allclose(with_bias, _naive_clip(f["image"], f["text"], f["scale"], f["bias"]))
    out = ClipLoss(cache_labels=True)(f["image"], f["text"], f["scale"], output_dict=True)
    assert set(out) == {"contrastive_loss"}


def test_clip_and_siglip_losses_equal_openclip_oracle():
    open_clip_loss = pytest.importorskip("open_clip.loss")
    f = _features(1)
    ours = ClipLoss()(f["image"], f["text"], f["scale"], f["bias"])
    theirs = open_clip_loss.ClipLoss()(f["image"], f["text"], f["scale"], f["bias"])
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(
        ClipLoss()(f["image"], f["text"], f["scale"]),
        open_clip_loss.ClipLoss()(f["image"], f["text"], f["scale"]),
    )
    ours = SigLipLoss()(f["image"], f["text"], f["scale"], f["bias"])
    theirs = open_clip_loss.SigLipLoss()(f["image"], f["text"], f["scale"], f["bias"])
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_siglip_loss_matches_naive_formula():
    f = _features(2)
    out = SigLipLoss()(f["image"], f["text"], f["scale"], f["bias"], output_dict=True)
    assert torch.allclose(
        out["contrastive_loss"], _naive_siglip(f["image"], f["text"], f["scale"], f["bias"])
    )


def test_coca_loss_is_weighted_sum_of_clip_and_padded_caption_loss():
    f = _features(3)
    n, t, vocab = len(f["image"]), 5, 11
    logits = torch.randn(n, t, vocab, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(1, vocab, (n, t), generator=torch.Generator().manual_seed(1))
    labels[:, 3:] = 0  # padding must not count
    out = CoCaLoss(caption_loss_weight=2.0, clip_loss_weight=0.5)(
        f["image"], f["text"], logits, labels, f["scale"], output_dict=True
    )
    keep = labels != 0
    expected_caption = -(logits.log_softmax(-1).gather(-1, labels[..., None])[..., 0][keep]).mean()
    assert torch.allclose(out["caption_loss"], 2.0 * expected_caption, atol=1e-6)
    assert torch.allclose(out["contrastive_loss"], 0.5 * _naive_clip(f["image"], f["text"], f["scale"]))
    clip_part, caption_part = CoCaLoss(2.0, 0.0)(f["image"], f["text"], logits, labels, f["scale"])
    assert clip_part.item() == 0.0 and torch.allclose(caption_part, 2.0 * expected_caption, atol=1e-6)


def test_distill_loss_is_contrastive_plus_soft_cross_entropy():
    s, t = _features(4), _features(5)
    out = DistillClipLoss()(
        s["image"], s["text"], s["scale"], t["image"], t["text"], t["scale"], output_dict=True
    )
    student = s["scale"] * s["image"] @ s["text"].T
    teacher = t["scale"] * t["image"] @ t["text"].T

    def soft_ce(teacher_logits, student_logits):
        rows = [
            -sum(
                math.exp(teacher_logits[i, j])
                / teacher_logits[i].exp().sum().item()
                * student_logits[i].log_softmax(0)[j].item()
                for j in range(teacher_logits.shape[1])
            )
            for i in range(teacher_logits.shape[0])
        ]
        return sum(rows) / len(rows)

    expected = (soft_ce(teacher, student) + soft_ce(teacher.T, student.T)) / 2
    assert out["distill_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(out["contrastive_loss"], _naive_clip(s["image"], s["text"], s["scale"]))


def test_create_loss_builds_the_loss_the_spec_names():
    coca = create_loss(LossSpec("coca", coca_caption_weight=3.0, coca_contrastive_weight=0.5, pad_id=7))
    assert type(coca) is CoCaLoss and coca.caption_loss_weight == 3.0 and coca.clip_loss_weight == 0.5
    assert coca.pad_id == 7
    assert type(create_loss(LossSpec("distill"))) is DistillClipLoss
    siglip = create_loss(LossSpec("siglip", siglip_dist_impl="shift"))
    assert type(siglip) is SigLipLoss and siglip.dist_impl == "shift"
    clip = create_loss(LossSpec(local_loss=True, gather_with_grad=True))
    assert type(clip) is ClipLoss and clip.local_loss and clip.gather_with_grad
    with pytest.raises(ValueError, match="unknown loss kind"):
        create_loss(LossSpec("triplet"))


# ---- distributed: each rank holds a slice; compare with one process on the whole batch ----

_CASES = {
    "clip_local_gradgather": lambda r, w: ClipLoss(
        local_loss=True, gather_with_grad=True, rank=r, world_size=w
    ),
    "clip_full_gradgather": lambda r, w: ClipLoss(
        local_loss=False, gather_with_grad=True, rank=r, world_size=w
    ),
    "clip_full_plaingather": lambda r, w: ClipLoss(
        local_loss=False, gather_with_grad=False, rank=r, world_size=w
    ),
    "clip_local_plaingather": lambda r, w: ClipLoss(
        local_loss=True, gather_with_grad=False, rank=r, world_size=w
    ),
    "siglip_gather": lambda r, w: SigLipLoss(rank=r, world_size=w, dist_impl="gather"),
    "siglip_shift": lambda r, w: SigLipLoss(rank=r, world_size=w, dist_impl="shift"),
    "siglip_bidir": lambda r, w: SigLipLoss(rank=r, world_size=w, dist_impl="bidir"),
    "siglip_reduce": lambda r, w: SigLipLoss(rank=r, world_size=w, dist_impl="reduce"),
}


def _rank_results(rank: int, world: int) -> dict[str, dict[str, torch.Tensor]]:
    f = _features()
    rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    results = {}
    for name, make in _CASES.items():
        image = f["image"][rows].clone().requires_grad_()
        text = f["text"][rows].clone().requires_grad_()
        scale = f["scale"].clone().requires_grad_()
        bias = f["bias"].clone().requires_grad_()
        loss = make(rank, world)(image, text, scale, bias)
        loss.backward()
        results[name] = {
            "loss": loss.detach(),
            "image": image.grad,
            "text": text.grad,
            "scale": scale.grad,
        }
    return results


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    return run_gloo_ranks(_rank_results, WORLD, tmp_path_factory.mktemp("dist"))


def _reference(name: str) -> dict[str, torch.Tensor]:
    f = _features()
    image, text = f["image"].clone().requires_grad_(), f["text"].clone().requires_grad_()
    scale, bias = f["scale"].clone().requires_grad_(), f["bias"].clone().requires_grad_()
    loss = (_naive_siglip if name.startswith("siglip") else _naive_clip)(image, text, scale, bias)
    loss.backward()
    return {"loss": loss.detach(), "image": image.grad, "text": text.grad, "scale": scale.grad}


@pytest.mark.parametrize(
    "name",
    [
        "clip_local_gradgather",
        "clip_full_gradgather",
        "siglip_gather",
        "siglip_shift",
        "siglip_bidir",
        "siglip_reduce",
    ],
)
def test_distributed_loss_equals_single_process_value_and_gradients(distributed_results, name):
    ref = _reference(name)
    per_rank = [r[name] for r in distributed_results]
    # DDP averages gradients and (for logging) losses over ranks; feature gradients arrive summed over ranks
    mean_loss = torch.stack([r["loss"] for r in per_rank]).mean()
    assert torch.allclose(mean_loss, ref["loss"], atol=1e-5)
    mean_scale_grad = torch.stack([r["scale"] for r in per_rank]).mean()
    assert torch.allclose(mean_scale_grad, ref["scale"], atol=1e-5)
    for key in ("image", "text"):
        got = torch.cat([r[key] for r in per_rank]) / WORLD
        assert torch.allclose(got, ref[key], atol=1e-5), key


def test_distributed_clip_loss_values_without_grad_gather(distributed_results):
    ref = _reference("clip_full_plaingather")
    for r in distributed_results:
        assert torch.allclose(r["clip_full_plaingather"]["loss"], ref["loss"], atol=1e-5)
    # the full-matrix loss back-propagates each rank's own rows exactly, even without a differentiable gather
    got = torch.cat([r["clip_full_plaingather"]["image"] for r in distributed_results])
    assert torch.allclose(got, ref["image"], atol=1e-5)
    mean_local = torch.stack([r["clip_local_plaingather"]["loss"] for r in distributed_results]).mean()
    assert torch.allclose(mean_local, ref["loss"], atol=1e-5)
