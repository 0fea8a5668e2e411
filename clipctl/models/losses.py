"""Training losses for CLIP-family models: contrastive (softmax), sigmoid (SigLIP), CoCa captioning, distillation.

Every loss works in one process and under ``torch.distributed``. Distributed variants see only the local batch
on each rank and exchange features so that the gradients averaged by DDP equal those of the same loss computed
in one process on the concatenated global batch (for ``ClipLoss`` this needs ``gather_with_grad=True``).

With ``multi_positive`` the contrastive losses (and the contrastive part of CoCa and distillation) count every
pair of the global batch that shares a caption (identical token ids) or a class label as a positive: the
softmax losses spread each row's target uniformly over its positives (as UniCL does), SigLIP gives them label
+1. The step passes the batch's ``caption_tokens`` and, where the data has them, ``class_labels`` (``-1`` for
"no label"); without repeated captions or labels the loss is the standard one, to the bit.

Output conventions follow OpenCLIP so that training code written against it keeps working: ``output_dict=True``
returns ``{"contrastive_loss": ..., "caption_loss": ..., "distill_loss": ...}`` (the keys a loss produces);
otherwise ``ClipLoss``/``SigLipLoss`` return one tensor and ``CoCaLoss``/``DistillClipLoss`` a tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

SIGLIP_DIST_IMPLS = ("bidir", "shift", "reduce", "gather")


def _dist_rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_features(
    image_features: Tensor,
    text_features: Tensor,
    *,
    gather_with_grad: bool,
    rank: int,
    world_size: int,
) -> tuple[Tensor, Tensor]:
    """Concatenate both feature batches over all ranks (rank order), keeping gradients where they are needed.

    Without ``gather_with_grad`` only this rank's slot carries gradient, which is exact for the full-matrix loss
    (each rank then back-propagates its own rows) but not for ``local_loss``.
    """
    if gather_with_grad:
        from torch.distributed.nn.functional import all_gather as all_gather_with_grad

        return torch.cat(all_gather_with_grad(image_features), 0), torch.cat(
            all_gather_with_grad(text_features), 0
        )
    images = [torch.empty_like(image_features) for _ in range(world_size)]
    texts = [torch.empty_like(text_features) for _ in range(world_size)]
    dist.all_gather(images, image_features.contiguous())
    dist.all_gather(texts, text_features.contiguous())
    # all_gather returns detached copies; put the grad-carrying local tensors back in their slots
    images[rank] = image_features
    texts[rank] = text_features
    return torch.cat(images, 0), torch.cat(texts, 0)


def _all_gather_rows(rows: Tensor, world_size: int) -> Tensor:
    parts = [torch.empty_like(rows) for _ in range(world_size)]
    dist.all_gather(parts, rows.contiguous())
    return torch.cat(parts, 0)


def pair_group_ids(caption_tokens: Tensor, class_labels: Tensor | None = None) -> Tensor:
    """One id per pair; pairs with equal ids are positives of each other.

    A pair's key is its class label where it has one (``>= 0``), otherwise its caption's token ids; labelled and
    unlabelled pairs never match (labels map to ids ``>= 0``, captions to ids ``< 0``).
    """
    _, caption_ids = torch.unique(caption_tokens, dim=0, return_inverse=True)
    if class_labels is None:
        return caption_ids
    return torch.where(class_labels >= 0, class_labels.to(caption_ids.dtype), -1 - caption_ids)


def global_pair_ids(caption_tokens: Tensor | None, class_labels: Tensor | None, world_size: int) -> Tensor:
    """:func:`pair_group_ids` of the global batch (every rank's pairs, in rank order), on every rank."""
    if caption_tokens is None:
        raise ValueError("a multi-positive loss needs the batch's caption_tokens (and class_labels, if any)")
    if world_size > 1:
        caption_tokens = _all_gather_rows(caption_tokens, world_size)
        if class_labels is not None:
            class_labels = _all_gather_rows(class_labels, world_size)
    return pair_group_ids(caption_tokens, class_labels)


class ClipLoss(nn.Module):
    """Symmetric InfoNCE: mean of cross-entropy over image->text and text->image logits.

    ``local_loss`` makes each rank score only its own rows against the global batch (memory linear in the global
    batch instead of quadratic); combined with ``gather_with_grad`` the averaged gradients equal the
    single-process ones. ``multi_positive``: see the module docstring.
    """

    def __init__(
        self,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        cache_labels: bool = False,
        rank: int = 0,
        world_size: int = 1,
        multi_positive: bool = False,
    ):
        super().__init__()
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.cache_labels = cache_labels
        self.rank = rank
        self.world_size = world_size
        self.multi_positive = multi_positive
        self._labels: dict[tuple[torch.device, int], Tensor] = {}

    def get_ground_truth(self, device: torch.device, num_logits: int) -> Tensor:
        key = (device, num_logits)
        if self.cache_labels and key in self._labels:
            return self._labels[key]
        labels = torch.arange(num_logits, device=device, dtype=torch.long)
        if self.world_size > 1 and self.local_loss:
            labels = labels + num_logits * self.rank
        if self.cache_labels:
            self._labels[key] = labels
        return labels

    def get_logits(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        logit_bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if self.world_size > 1:
            all_images, all_texts = gather_features(
                image_features,
                text_features,
                gather_with_grad=self.gather_with_grad,
                rank=self.rank,
                world_size=self.world_size,
            )
            if self.local_loss:
                per_image = logit_scale * image_features @ all_texts.T
                per_text = logit_scale * text_features @ all_images.T
            else:
                per_image = logit_scale * all_images @ all_texts.T
                per_text = per_image.T
        else:
            per_image = logit_scale * image_features @ text_features.T
            per_text = per_image.T
        if logit_bias is not None:
            # SigLIP checkpoints fine-tuned with this loss carry a bias; leaving it out of the graph makes DDP
            # fail with an unused-parameter error
            per_image = per_image + logit_bias
            per_text = per_text + logit_bias
        return per_image, per_text

    def contrastive_loss(
        self,
        per_image: Tensor,
        per_text: Tensor,
        caption_tokens: Tensor | None = None,
        class_labels: Tensor | None = None,
    ) -> Tensor:
        """Mean cross-entropy of both directions: one positive per row, or (``multi_positive``) all of them."""
        labels = self.get_ground_truth(per_image.device, per_image.shape[0])
        loss = (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2
        if not self.multi_positive:
            return loss
        # target = onehot + (positives / count - onehot): cross-entropy is linear in the target, so this is the
        # multi-positive loss, and without repeats the second term is exactly zero in value and gradient (one
        # soft-target cross-entropy would differ from the standard loss in the last bit of its mean)
        extra = self.positive_targets(caption_tokens, class_labels, per_image.dtype)
        extra[torch.arange(len(labels), device=labels.device), labels] -= 1
        return loss + (F.cross_entropy(per_image, extra) + F.cross_entropy(per_text, extra)) / 2

    def positive_targets(
        self, caption_tokens: Tensor | None, class_labels: Tensor | None, dtype: torch.dtype
    ) -> Tensor:
        """Rows (this rank's pairs with ``local_loss``, else all) over the global batch: 1/#positives or 0."""
        ids = global_pair_ids(caption_tokens, class_labels, self.world_size)
        rows = ids.view(self.world_size, -1)[self.rank] if self.world_size > 1 and self.local_loss else ids
        positives = (rows[:, None] == ids[None, :]).float()
        return (positives / positives.sum(dim=1, keepdim=True)).to(dtype)

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        logit_bias: Tensor | None = None,
        output_dict: bool = False,
        caption_tokens: Tensor | None = None,
        class_labels: Tensor | None = None,
        **unused: Any,
    ) -> Tensor | dict[str, Tensor]:
        per_image, per_text = self.get_logits(image_features, text_features, logit_scale, logit_bias)
        loss = self.contrastive_loss(per_image, per_text, caption_tokens, class_labels)
        return {"contrastive_loss": loss} if output_dict else loss


class CoCaLoss(ClipLoss):
    """``clip_loss_weight * ClipLoss + caption_loss_weight * token cross-entropy`` (padding ignored)."""

    def __init__(
        self,
        caption_loss_weight: float,
        clip_loss_weight: float,
        pad_id: int = 0,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        cache_labels: bool = False,
        rank: int = 0,
        world_size: int = 1,
        multi_positive: bool = False,
    ):
        super().__init__(local_loss, gather_with_grad, cache_labels, rank, world_size, multi_positive)
        self.caption_loss_weight = caption_loss_weight
        self.clip_loss_weight = clip_loss_weight
        self.pad_id = pad_id

    def forward(  # type: ignore[override]
        self,
        image_features: Tensor,
        text_features: Tensor,
        logits: Tensor,
        labels: Tensor,
        logit_scale: Tensor,
        logit_bias: Tensor | None = None,
        output_dict: bool = False,
        caption_tokens: Tensor | None = None,
        class_labels: Tensor | None = None,
        **unused: Any,
    ) -> tuple[Tensor, Tensor] | dict[str, Tensor]:
        if self.clip_loss_weight:
            clip_loss = self.clip_loss_weight * super().forward(
                image_features,
                text_features,
                logit_scale,
                logit_bias,
                caption_tokens=caption_tokens,
                class_labels=class_labels,
            )
        else:
            clip_loss = torch.zeros((), device=logits.device, dtype=logits.dtype)
        # logits are [B, T, V]; cross_entropy wants the class dimension second
        caption_loss = self.caption_loss_weight * F.cross_entropy(
            logits.permute(0, 2, 1), labels, ignore_index=self.pad_id
        )
        if output_dict:
            return {"contrastive_loss": clip_loss, "caption_loss": caption_loss}
        return clip_loss, caption_loss


def soft_cross_entropy(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """Row-mean of ``-sum(softmax(teacher) * log_softmax(student))``."""
    return -(teacher_logits.softmax(dim=1) * student_logits.log_softmax(dim=1)).sum(dim=1).mean()


class DistillClipLoss(ClipLoss):
    """Contrastive loss of the student plus soft cross-entropy from the teacher's logits to the student's."""

    def forward(  # type: ignore[override]
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        dist_image_features: Tensor,
        dist_text_features: Tensor,
        dist_logit_scale: Tensor,
        logit_bias: Tensor | None = None,
        dist_logit_bias: Tensor | None = None,
        output_dict: bool = False,
        caption_tokens: Tensor | None = None,
        class_labels: Tensor | None = None,
        **unused: Any,
    ) -> tuple[Tensor, Tensor] | dict[str, Tensor]:
        per_image, per_text = self.get_logits(image_features, text_features, logit_scale, logit_bias)
        teacher_image, teacher_text = self.get_logits(
            dist_image_features, dist_text_features, dist_logit_scale, dist_logit_bias
        )
        contrastive_loss = self.contrastive_loss(per_image, per_text, caption_tokens, class_labels)
        distill_loss = (
            soft_cross_entropy(teacher_image, per_image) + soft_cross_entropy(teacher_text, per_text)
        ) / 2
        if output_dict:
            return {"contrastive_loss": contrastive_loss, "distill_loss": distill_loss}
        return contrastive_loss, distill_loss


class _Exchange(torch.autograd.Function):
    """Point-to-point exchange that is differentiable: gradients travel back along the reversed edges.

    ``send_to[i]`` receives ``tensors[i]``; one tensor shaped like ``tensors[0]`` arrives from each ``recv_from``.
    """

    @staticmethod
    def forward(ctx, group, send_to: tuple[int, ...], recv_from: tuple[int, ...], *tensors: Tensor):  # type: ignore[override]
        ctx.group, ctx.send_to, ctx.recv_from = group, send_to, recv_from
        return tuple(_p2p(group, list(tensors), send_to, recv_from, tensors[0]))

    @staticmethod
    def backward(ctx, *grads: Tensor):  # type: ignore[override]
        grads = tuple(g.contiguous() for g in grads)
        back = _p2p(ctx.group, list(grads), ctx.recv_from, ctx.send_to, grads[0])
        return (None, None, None, *back)


def _p2p(group, tensors: list[Tensor], send_to, recv_from, like: Tensor) -> list[Tensor]:
    received = [torch.empty_like(like) for _ in recv_from]
    ops = [
        dist.P2POp(dist.isend, t.contiguous(), _global(peer, group), group)
        for t, peer in zip(tensors, send_to, strict=True)
    ]
    ops += [
        dist.P2POp(dist.irecv, r, _global(peer, group), group)
        for r, peer in zip(received, recv_from, strict=True)
    ]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return received


def _global(rank: int, group) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


class SigLipLoss(nn.Module):
    """Pairwise sigmoid loss: ``-sum(logsigmoid(y * (s * I @ T.T + b))) / N`` with ``y = +1`` on matching pairs.

    Under ``torch.distributed`` images stay on their rank and text features travel: ``gather`` all-gathers them
    with gradient, ``shift`` passes them round the ring one hop per step, ``bidir`` sends both ways at once (half
    the steps), ``reduce`` broadcasts each rank's block through a masked all-reduce. All give the same value
    and gradients; they trade memory against communication. With ``multi_positive`` every pair sharing a
    caption or label gets ``y = +1`` (see the module docstring).
    """

    def __init__(
        self,
        cache_labels: bool = False,
        rank: int = 0,
        world_size: int = 1,
        dist_impl: str | None = None,
        multi_positive: bool = False,
    ):
        super().__init__()
        dist_impl = dist_impl or "bidir"
        if dist_impl not in SIGLIP_DIST_IMPLS:
            raise ValueError(
                f"unknown SigLIP dist_impl {dist_impl!r}; choose one of {', '.join(SIGLIP_DIST_IMPLS)}"
            )
        self.cache_labels = cache_labels
        self.rank = rank
        self.world_size = world_size
        self.dist_impl = dist_impl
        self.multi_positive = multi_positive

    @staticmethod
    def get_ground_truth(
        device: torch.device, dtype: torch.dtype, num_logits: int, negative_only: bool = False
    ) -> Tensor:
        labels = -torch.ones((num_logits, num_logits), device=device, dtype=dtype)
        if not negative_only:
            labels = labels + 2 * torch.eye(num_logits, device=device, dtype=dtype)
        return labels

    def _block_loss(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        logit_bias: Tensor | None,
        negative_only: bool = False,
        positives: Tensor | None = None,
    ) -> Tensor:
        """``positives`` (a bool matrix) replaces the diagonal (or, ``negative_only``, no) positives."""
        logits = logit_scale * image_features @ text_features.T
        if logit_bias is not None:
            logits = logits + logit_bias
        if positives is not None:
            labels = 2 * positives.to(image_features.dtype) - 1
        else:
            labels = self.get_ground_truth(
                image_features.device, image_features.dtype, image_features.shape[0], negative_only
            )
        return -F.logsigmoid(labels * logits).sum() / image_features.shape[0]

    def _positives(self, ids: Tensor | None, source: int) -> Tensor | None:
        """Which of this rank's pairs (rows) match those of rank ``source`` (columns); None without ids."""
        if ids is None:
            return None
        blocks = ids.view(self.world_size, -1)
        return blocks[self.rank][:, None] == blocks[source][None, :]

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        logit_bias: Tensor | None = None,
        output_dict: bool = False,
        caption_tokens: Tensor | None = None,
        class_labels: Tensor | None = None,
        **unused: Any,
    ) -> Tensor | dict[str, Tensor]:
        ids = global_pair_ids(caption_tokens, class_labels, self.world_size) if self.multi_positive else None
        if self.world_size > 1 and self.dist_impl == "reduce":
            loss = self._reduce_loss(image_features, text_features, logit_scale, logit_bias, ids)
            return {"contrastive_loss": loss} if output_dict else loss
        loss = self._block_loss(
            image_features, text_features, logit_scale, logit_bias, positives=self._positives(ids, self.rank)
        )
        if self.world_size > 1:
            for source, remote_texts in self._remote_text_blocks(text_features):
                loss = loss + self._block_loss(
                    image_features,
                    remote_texts,
                    logit_scale,
                    logit_bias,
                    negative_only=True,
                    positives=self._positives(ids, source),
                )
        return {"contrastive_loss": loss} if output_dict else loss

    def _reduce_loss(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        logit_bias: Tensor | None,
        ids: Tensor | None,
    ) -> Tensor:
        from torch.distributed.nn.functional import all_reduce as all_reduce_with_grad

        loss = image_features.new_zeros(())
        for owner in range(self.world_size):
            if owner == self.rank:
                contribution = text_features
            else:
                # a zero that still requires grad, so this rank takes part in the backward all-reduce too
                contribution = torch.zeros_like(text_features).requires_grad_(text_features.requires_grad)
            # the owner also uses the reduced copy (numerically its own block) so that every rank runs every
            # backward all-reduce, in the same order
            block = all_reduce_with_grad(contribution)
            loss = loss + self._block_loss(
                image_features,
                block,
                logit_scale,
                logit_bias,
                negative_only=owner != self.rank,
                positives=self._positives(ids, owner),
            )
        return loss

    def _remote_text_blocks(self, text_features: Tensor) -> list[tuple[int, Tensor]]:
        """The other ranks' text features as ``(source rank, block)``."""
        rank, world = self.rank, self.world_size
        left, right = (rank - 1) % world, (rank + 1) % world
        if self.dist_impl == "gather":
            from torch.distributed.nn.functional import all_gather as all_gather_with_grad

            blocks = all_gather_with_grad(text_features)
            return [(i, b) for i, b in enumerate(blocks) if i != rank]
        if self.dist_impl == "shift":
            blocks, current = [], text_features
            for hop in range(1, world):
                (current,) = _Exchange.apply(None, (right,), (left,), current)
                blocks.append(((rank - hop) % world, current))
            return blocks
        # bidir: each step carries one block clockwise and one counter-clockwise, so (world-1)/2 steps suffice
        blocks = []
        to_left = to_right = text_features
        steps = (world - 1) // 2
        for hop in range(1, steps + 1):
            from_right, from_left = _Exchange.apply(None, (left, right), (right, left), to_left, to_right)
            blocks += [((rank + hop) % world, from_right), ((rank - hop) % world, from_left)]
            to_left, to_right = from_right, from_left
        if (world - 1) % 2:
            (last,) = _Exchange.apply(None, (right,), (left,), to_right)
            blocks.append(((rank - steps - 1) % world, last))
        return blocks


LOSS_KINDS = ("clip", "siglip", "coca", "distill")


@dataclass(frozen=True)
class LossSpec:
    """Which loss, with which settings; the training job decides (see ``clipctl.train.losses``)."""

    kind: str = "clip"  # one of LOSS_KINDS
    local_loss: bool = False
    gather_with_grad: bool = False
    siglip_dist_impl: str | None = None
    coca_caption_weight: float = 2.0
    coca_contrastive_weight: float = 1.0
    pad_id: int = 0  # the text tower's padding token, ignored by CoCa's caption loss
    multi_positive: bool = False  # pairs sharing a caption or class label are positives


def create_loss(spec: LossSpec) -> nn.Module:
    """The loss module ``spec`` describes, for this process's rank in the process group (if any)."""
    rank, world_size = _dist_rank_world()
    common = dict(
        local_loss=spec.local_loss,
        gather_with_grad=spec.gather_with_grad,
        cache_labels=True,
        rank=rank,
        world_size=world_size,
        multi_positive=spec.multi_positive,
    )
    if spec.kind == "distill":
        return DistillClipLoss(**common)
    if spec.kind == "coca":
        return CoCaLoss(
            caption_loss_weight=spec.coca_caption_weight,
            clip_loss_weight=spec.coca_contrastive_weight,
            pad_id=spec.pad_id,
            **common,
        )
    if spec.kind == "siglip":
        return SigLipLoss(
            rank=rank,
            world_size=world_size,
            dist_impl=spec.siglip_dist_impl,
            multi_positive=spec.multi_positive,
        )
    if spec.kind != "clip":
        raise ValueError(f"unknown loss kind {spec.kind!r}; one of {', '.join(LOSS_KINDS)}")
    return ClipLoss(**common)
