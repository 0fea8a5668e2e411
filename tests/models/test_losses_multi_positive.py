"""Multi-positive losses: without repeated captions or labels they are the standard losses to the bit; with
them they equal hand-written multi-positive formulas, in one process and spread over gloo ranks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipctl.models.losses import (
    ClipLoss,
    CoCaLoss,
    DistillClipLoss,
    LossSpec,
    SigLipLoss,
    create_loss,
    pair_group_ids,
)
from tests.models.gloo_ranks import run_gloo_ranks

WORLD = 3
PER_RANK = 4
DIM = 8


def _features(seed: int = 0, n: int = WORLD * PER_RANK) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": F.normalize(torch.randn(n, DIM, generator=g), dim=-1),
        "text": F.normalize(torch.randn(n, DIM, generator=g), dim=-1),
        "scale": torch.tensor(3.5),
        "bias": torch.tensor(-1.5),
    }


def _tokens(caption_of_row: list[int], length: int = 6) -> torch.Tensor:
    """Token rows; rows with the same caption number are identical, others differ (in one position)."""
    rows = torch.zeros(len(caption_of_row), length, dtype=torch.long)
    rows[:, 0] = 49406
    rows[:, 1] = 100 + torch.tensor(caption_of_row)
    rows[:, 2] = 49407
    return rows


# a duplicate caption within a rank and across ranks, labels that join captions, and unlabelled pairs
DUP_CAPTIONS = [0, 1, 0, 2, 3, 1, 4, 5, 6, 0, 7, 8]
DUP_LABELS = [0, -1, 0, 1, 2, -1, 1, -1, 3, -1, 2, 4]


def _grads(loss_fn, f, **keys):
    image = f["image"].clone().requires_grad_()
    text = f["text"].clone().requires_grad_()
    scale = f["scale"].clone().requires_grad_()
    bias = f["bias"].clone().requires_grad_()
    loss = loss_fn(image, text, scale, bias, **keys)
    loss.backward()
    return [loss.detach(), image.grad, text.grad, scale.grad, bias.grad]


def _assert_identical(got, want):
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("with_labels", [False, True])
def test_without_repeats_clip_and_siglip_losses_and_gradients_are_the_standard_ones_bit_for_bit(with_labels):
    n = WORLD * PER_RANK
    keys = {"caption_tokens": _tokens(list(range(n)))}
    if with_labels:
        # labels that are all different decide, even though every caption is the same
        keys = {"caption_tokens": _tokens([0] * n), "class_labels": torch.arange(n)}
    for seed in range(3):
        f = _features(seed)
        _assert_identical(_grads(ClipLoss(multi_positive=True), f, **keys), _grads(ClipLoss(), f))
        _assert_identical(_grads(SigLipLoss(multi_positive=True), f, **keys), _grads(SigLipLoss(), f))


def test_without_repeats_coca_and_distillation_contrastive_parts_are_unchanged():
    f, teacher = _features(1), _features(2)
    n = len(f["image"])
    keys = {"caption_tokens": _tokens(list(range(n)))}
    logits = torch.randn(n, 5, 11, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(1, 11, (n, 5), generator=torch.Generator().manual_seed(1))
    plain = CoCaLoss(2.0, 1.0)(f["image"], f["text"], logits, labels, f["scale"], output_dict=True)
    multi = CoCaLoss(2.0, 1.0, multi_positive=True)(
        f["image"], f["text"], logits, labels, f["scale"], output_dict=True, **keys
    )
    assert plain.keys() == multi.keys() and all(torch.equal(plain[k], multi[k]) for k in plain)
    args = (f["image"], f["text"], f["scale"], teacher["image"], teacher["text"], teacher["scale"])
    plain = DistillClipLoss()(*args, output_dict=True)
    multi = DistillClipLoss(multi_positive=True)(*args, output_dict=True, **keys)
    assert all(torch.equal(plain[k], multi[k]) for k in plain)


def _positive_mask(captions: list[int], labels: list[int] | None) -> torch.Tensor:
    """Written out pair by pair: equal labels where both have one, equal captions where neither has one."""
    n = len(captions)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            if labels is None or (labels[i] < 0 and labels[j] < 0):
                mask[i, j] = captions[i] == captions[j]
            else:
                mask[i, j] = labels[i] >= 0 and labels[i] == labels[j]
    return mask


def _hand_multi_positive_clip(image, text, scale, bias, mask):
    logits = scale * image @ text.T + bias
    target = mask.float() / mask.float().sum(dim=1, keepdim=True)

    def cross_entropy(rows, targets):
        return torch.stack([-(targets[i] * rows[i].log_softmax(0)).sum() for i in range(len(rows))]).mean()

    return (cross_entropy(logits, target) + cross_entropy(logits.T, target.T)) / 2


def _hand_multi_positive_siglip(image, text, scale, bias, mask):
    logits = scale * image @ text.T + bias
    return -F.logsigmoid((2 * mask.float() - 1) * logits).sum() / len(image)


@pytest.mark.parametrize("labels", [None, DUP_LABELS], ids=["captions", "labels"])
def test_with_repeats_the_losses_equal_hand_written_multi_positive_formulas(labels):
    f = _features(3)
    keys = {"caption_tokens": _tokens(DUP_CAPTIONS)}
    if labels is not None:
        keys["class_labels"] = torch.tensor(labels)
    mask = _positive_mask(DUP_CAPTIONS, labels)
    assert mask.sum() > len(mask)  # the case has repeats
    got = ClipLoss(multi_positive=True)(f["image"], f["text"], f["scale"], f["bias"], **keys)
    want = _hand_multi_positive_clip(f["image"], f["text"], f["scale"], f["bias"], mask)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    got = SigLipLoss(multi_positive=True)(f["image"], f["text"], f["scale"], f["bias"], **keys)
    want = _hand_multi_positive_siglip(f["image"], f["text"], f["scale"], f["bias"], mask)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # and it is not the standard loss
    assert not torch.allclose(got, SigLipLoss()(f["image"], f["text"], f["scale"], f["bias"]))


def test_pair_ids_labels_win_over_captions_and_unlabelled_pairs_fall_back_to_captions():
    tokens = _tokens([0, 0, 1, 1, 2, 2])
    labels = torch.tensor([5, 6, 5, -1, -1, -1])
    ids = pair_group_ids(tokens, labels).tolist()
    assert (
        ids[0] == ids[2] != ids[1]
    )  # same label, different captions: positives; same caption, other label: not
    assert ids[4] == ids[5] != ids[3]  # unlabelled: equal captions
    assert len(set(ids[:3]) & set(ids[3:])) == 0  # labelled and unlabelled pairs never match
    assert pair_group_ids(tokens).tolist() == [0, 0, 1, 1, 2, 2]


def test_a_multi_positive_loss_without_token_ids_is_a_programming_error():
    f = _features()
    with pytest.raises(ValueError, match="caption_tokens"):
        ClipLoss(multi_positive=True)(f["image"], f["text"], f["scale"])


def test_create_loss_passes_multi_positive_to_every_kind():
    for kind in ("clip", "siglip", "coca", "distill"):
        assert create_loss(LossSpec(kind, multi_positive=True)).multi_positive
        assert not create_loss(LossSpec(kind)).multi_positive


# ---- distributed: each rank holds a slice of the batch with repeats across ranks ----

_CASES = {
    "clip_local_gradgather": lambda r, w: ClipLoss(
        local_loss=True, gather_with_grad=True, rank=r, world_size=w, multi_positive=True
    ),
    "clip_full_gradgather": lambda r, w: ClipLoss(
        gather_with_grad=True, rank=r, world_size=w, multi_positive=True
    ),
    "siglip_gather": lambda r, w: SigLipLoss(rank=r, world_size=w, dist_impl="gather", multi_positive=True),
    "siglip_shift": lambda r, w: SigLipLoss(rank=r, world_size=w, dist_impl="shift", multi_positive=True),
    "siglip_bidir": lambda r, w: SigLipLoss(rank=r, world_size=w, dist_impl="bidir", multi_positive=True),
    "siglip_reduce": lambda r, w: SigLipLoss(rank=r, world_size=w, dist_impl="reduce", multi_positive=True),
}


def _rank_results(rank: int, world: int) -> dict[str, dict[str, torch.Tensor]]:
    f = _features()
    rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    keys = {
        "caption_tokens": _tokens(DUP_CAPTIONS)[rows],
        "class_labels": torch.tensor(DUP_LABELS)[rows],
    }
    results = {}
    for name, make in _CASES.items():
        piece = {k: (v[rows] if v.dim() else v) for k, v in f.items()}
        loss, image, text, scale, _ = _grads(make(rank, world), piece, **keys)
        results[name] = {"loss": loss, "image": image, "text": text, "scale": scale}
    return results


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    return run_gloo_ranks(_rank_results, WORLD, tmp_path_factory.mktemp("dist"))


@pytest.mark.parametrize("name", list(_CASES))
def test_distributed_multi_positive_loss_equals_one_process_on_the_whole_batch(distributed_results, name):
    f = _features()
    mask = _positive_mask(DUP_CAPTIONS, DUP_LABELS)
    hand = _hand_multi_positive_siglip if name.startswith("siglip") else _hand_multi_positive_clip
    image, text = f["image"].clone().requires_grad_(), f["text"].clone().requires_grad_()
    scale = f["scale"].clone().requires_grad_()
    loss = hand(image, text, scale, f["bias"], mask)
    loss.backward()
    per_rank = [r[name] for r in distributed_results]
    # DDP averages gradients over ranks; the feature gradients of a slice arrive summed over ranks
    torch.testing.assert_close(
        torch.stack([r["loss"] for r in per_rank]).mean(), loss.detach(), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        torch.stack([r["scale"] for r in per_rank]).mean(), scale.grad, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        torch.cat([r["image"] for r in per_rank]) / WORLD, image.grad, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(torch.cat([r["text"] for r in per_rank]) / WORLD, text.grad, atol=1e-5, rtol=0)
