"""What one rank of a training run holds in memory, under DDP and under FSDP, before anything is allocated.

Nothing here is a table of model sizes. :func:`measure_footprint` builds the model on the meta device (no
weights are allocated or read) and measures it:

- parameters: the shapes of the meta model (trainable ones after ``--lock-image``/``--lock-text``);
- activations: one forward on meta tensors at batch 2 under ``torch.autograd.graph.saved_tensors_hooks``,
  counting the bytes of every distinct tensor autograd keeps for backward (parameters excluded), halved. With
  ``--grad-checkpointing`` each checkpointed block keeps only its input, and one block's tensors exist again
  while it is recomputed: both are measured per block in the same forward;
- the loss's logits: the contrastive loss run on meta features of two batch sizes, its saved bytes per entry
  of the logits matrix (rows x columns: the global batch squared, or the local rows x the global batch with
  ``--local-loss``).

:func:`plan_memory` then sizes one rank: DDP keeps whole parameters, gradients (plus DDP's gradient buckets of
the same size when there are several ranks) and AdamW's two moments; FSDP keeps a 1/world shard of each (padded
as FSDP pads each tensor's first dimension) plus the units it has gathered at a time (the largest unit twice,
for prefetching, and the root, in the compute dtype; that unit's unsharded gradients in float32). The total
adds everything, so it is the footprint at the start of backward with the gradients counted in full: an upper
bound of the peak (README: how close it is, measured on CPU by bench/fsdp.py and the tests).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from clipctl.train.fsdp import block_units, tower_units

GIB = 1024**3
_ADAM_MOMENTS = 2


@dataclass(frozen=True)
class Footprint:
    """What a model costs, measured once; independent of the batch size and the number of ranks."""

    model: str
    param_shapes: list[tuple[int, ...]]
    trainable_shapes: list[tuple[int, ...]]
    unit_params: list[int]  # elements of each sharding unit's own parameters
    root_params: int
    compute_bytes: int  # bytes per element of the gathered parameters (bf16 under amp_bf16)
    activations_per_sample: int
    activations_per_sample_checkpointed: int
    logits_bytes_per_entry: float
    teacher_params: int = 0

    @property
    def params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes)

    @property
    def trainable(self) -> int:
        return sum(math.prod(s) for s in self.trainable_shapes)


@dataclass(frozen=True)
class RankMemory:
    """Bytes one rank holds under one strategy."""

    strategy: str
    params: int
    grads: int
    optimizer: int
    gathered: int  # FSDP: parameters and gradients of the units gathered at a time
    teacher: int
    activations: int  # for the batch, without grad checkpointing
    activations_checkpointed: int
    logits: int  # the loss over the global batch
    logits_local: int  # with --local-loss

    def total(self, *, grad_checkpointing: bool, local_loss: bool) -> int:
        activations = self.activations_checkpointed if grad_checkpointing else self.activations
        logits = self.logits_local if local_loss else self.logits
        return self.params + self.grads + self.optimizer + self.gathered + self.teacher + activations + logits


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    batch_size: int
    world_size: int
    precision: str
    grad_checkpointing: bool
    local_loss: bool
    device_memory_gib: float | None
    footprint: Footprint
    ranks: dict[str, RankMemory] = field(default_factory=dict)

    def total(self, strategy: str) -> int:
        return self.ranks[strategy].total(
            grad_checkpointing=self.grad_checkpointing, local_loss=self.local_loss
        )

    def fits(self, strategy: str) -> bool | None:
        if self.device_memory_gib is None:
            return None
        return self.total(strategy) <= self.device_memory_gib * GIB

    def rows(self) -> list[tuple[str, list[int]]]:
        """(label, bytes per strategy) in the order a report lists them."""
        fields = (
            ("parameters", "params"),
            ("gradients", "grads"),
            ("optimizer state (AdamW)", "optimizer"),
            ("gathered units (FSDP)", "gathered"),
            ("teacher (replicated)", "teacher"),
            ("activations", "activations"),
            ("activations, --grad-checkpointing", "activations_checkpointed"),
            ("logits", "logits"),
            ("logits, --local-loss", "logits_local"),
        )
        rows = [(label, [getattr(self.ranks[s], key) for s in self.ranks]) for label, key in fields]
        return [(label, values) for label, values in rows if any(values) or label == "gathered units (FSDP)"]


# --- measuring ----------------------------------------------------------------------------------------------


class _SavedBytes:
    """Bytes of the distinct tensors autograd saves for backward, parameters excluded."""

    def __init__(self, exclude: set[int]):
        self.exclude = exclude
        self.seen: dict[int, int] = {}

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in self.exclude:
            self.seen[key] = storage.nbytes()
        return tensor

    @contextmanager
    def recording(self) -> Iterator[None]:
        with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor):
            yield


@contextmanager
def _recording_units(units: list[nn.Module], saved: _SavedBytes) -> Iterator[list[list[int]]]:
    """Per unit call: [bytes saved before it, bytes of its input, bytes saved inside it].

    Wraps ``forward`` rather than adding hooks: a transformer skips its last-token shortcut when hooks watch
    its blocks, and the measurement must see the forward that training runs."""
    calls: list[list[int]] = []

    def wrap(forward: Any) -> Any:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            call = [saved.total, 0 if first is None else first.numel() * first.element_size()]
            calls.append(call)
            out = forward(*args, **kwargs)
            call.append(saved.total - call[0])
            return out

        return recorded

    for unit in units:
        unit.forward = wrap(unit.forward)
    try:
        yield calls
    finally:
        for unit in units:
            del unit.forward


def _checkpoint_units(model: nn.Module) -> list[nn.Module]:
    """The blocks grad checkpointing recomputes: the innermost layer lists (timm checkpoints the blocks of a
    stage, not the stage)."""
    units = []
    for unit in block_units(model):
        inner = block_units(unit)
        units.extend(inner or [unit])
    return units


def _forward_saved(model: nn.Module, batch: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(saved bytes, bytes saved inside checkpoint units, bytes of their inputs + their largest saved) for one
    forward at ``batch`` on meta tensors."""
    exclude = {p.untyped_storage()._cdata for p in model.parameters()}
    saved = _SavedBytes(exclude)
    size = getattr(model.visual, "image_size", (224, 224))
    size = (size, size) if isinstance(size, int) else size
    images = torch.zeros(batch, 3, *size, device="meta", dtype=dtype)
    texts = torch.zeros(batch, model.context_length, device="meta", dtype=torch.long)
    with _recording_units(_checkpoint_units(model), saved) as calls, torch.enable_grad(), saved.recording():
        model(images, texts)
    inside = sum(c[2] for c in calls)
    kept = sum(c[1] for c in calls) + max((c[2] for c in calls), default=0)
    return saved.total, inside, kept


def _activations(model: nn.Module, compute: torch.dtype) -> tuple[int, int, int]:
    """:func:`_forward_saved` at batch 2 with the weights in the compute dtype, as FSDP's mixed precision
    gathers them; in float32 (an upper bound) for a model whose forward mixes dtypes without autocast.

    Batch 2: saved bytes grow linearly from there (ViT-B-32, convnext_base, ViT-H-14: batch 4 and 8 are 2x and
    4x batch 2 exactly), while batch 1 lays some tensors out differently (+20%)."""
    if compute != torch.float32:
        try:
            return _forward_saved(model.to(compute), 2, compute)
        except RuntimeError:  # e.g. CoCa's pooler meets a float32 tensor: autocast would cast it, meta cannot
            model.float()
    return _forward_saved(model, 2, torch.float32)


def _logits_bytes_per_entry(embed_dim: int) -> float:
    from clipctl.models.losses import LossSpec, create_loss

    loss = create_loss(LossSpec(kind="clip"))
    sizes = (1024, 2048)
    totals = []
    for n in sizes:
        image = torch.zeros(n, embed_dim, device="meta", requires_grad=True)
        text = torch.zeros(n, embed_dim, device="meta", requires_grad=True)
        scale = torch.zeros((), device="meta", requires_grad=True)
        saved = _SavedBytes(set())
        with saved.recording():
            loss(image, text, scale)
        totals.append(saved.total)
    # saved(n) = a n^2 + b n (the logits, and the features): a is the cost per entry
    (n1, n2), (s1, s2) = sizes, totals
    return (s2 / n2 - s1 / n1) / (n2 - n1)


def measure_footprint(
    model_name: str,
    *,
    precision: str = "amp_bf16",
    lock_image: bool = False,
    lock_text: bool = False,
    teacher: str | None = None,
    **model_kwargs: Any,
) -> Footprint:
    """Measure ``model_name`` on the meta device (seconds, no memory; see the module docstring)."""
    from clipctl.api import create_model
    from clipctl.runtime import plan_precision

    plan = plan_precision(precision, torch.device("cuda"), training=True)
    compute = plan.autocast_dtype or plan.input_dtype or torch.float32
    model = create_model(model_name, device="meta", output_dict=True, **model_kwargs)
    if lock_image:
        model.lock_image_tower()
    if lock_text:
        model.lock_text_tower()
    model.train()
    shapes = [tuple(p.shape) for p in model.parameters()]
    trainable = [tuple(p.shape) for p in model.parameters() if p.requires_grad]
    units = block_units(model) + tower_units(model)
    owned = set()
    unit_params = []
    for unit in units:  # innermost first: a tower's own parameters exclude its blocks'
        mine = [p for p in unit.parameters() if id(p) not in owned]
        owned.update(id(p) for p in mine)
        unit_params.append(sum(p.numel() for p in mine))
    root = sum(p.numel() for p in model.parameters() if id(p) not in owned)
    embed_dim = _embed_dim(model)
    two, two_inside, two_kept = _activations(model, compute)
    per_sample = two // 2
    per_sample_checkpointed = (two - two_inside + two_kept) // 2
    teacher_params = 0
    if teacher:
        teacher_params = sum(p.numel() for p in create_model(teacher, device="meta").parameters())
    return Footprint(
        model=model_name,
        param_shapes=shapes,
        trainable_shapes=trainable,
        unit_params=unit_params,
        root_params=root,
        compute_bytes=torch.finfo(compute).bits // 8,
        activations_per_sample=per_sample,
        activations_per_sample_checkpointed=max(0, per_sample_checkpointed),
        logits_bytes_per_entry=_logits_bytes_per_entry(embed_dim),
        teacher_params=teacher_params,
    )


def _embed_dim(model: nn.Module) -> int:
    size = getattr(model.visual, "image_size", (224, 224))
    size = (size, size) if isinstance(size, int) else size
    with torch.no_grad():
        return int(model.encode_image(torch.zeros(1, 3, *size, device="meta")).shape[-1])


# --- sizing ---------------------------------------------------------------------------------------------------


def _sharded_numel(shape: tuple[int, ...], world_size: int) -> int:
    """FSDP2 pads a tensor's first dimension to a multiple of the world size and keeps one slice per rank."""
    if not shape:
        shape = (1,)
    return math.ceil(shape[0] / world_size) * math.prod(shape[1:])


def _rank_memory(fp: Footprint, strategy: str, batch: int, world_size: int, accum_freq: int) -> RankMemory:
    fp32 = 4
    sharded = strategy == "FSDP" and world_size > 1
    shard = world_size if sharded else 1
    params = sum(_sharded_numel(s, shard) for s in fp.param_shapes)
    trainable = sum(_sharded_numel(s, shard) for s in fp.trainable_shapes)
    gathered = 0
    grads = trainable * fp32
    if sharded:
        largest = max(fp.unit_params, default=0)
        gathered = (2 * largest + fp.root_params) * fp.compute_bytes + largest * fp32
    elif world_size > 1:
        grads *= 2  # DDP's reducer keeps a flat bucket copy of the gradients beside param.grad
    micro = batch * accum_freq
    rows = cols = micro * world_size
    return RankMemory(
        strategy=strategy,
        params=params * fp32,
        grads=grads,
        optimizer=_ADAM_MOMENTS * trainable * fp32,
        gathered=gathered,
        teacher=fp.teacher_params * fp.compute_bytes,
        activations=fp.activations_per_sample * batch,
        activations_checkpointed=fp.activations_per_sample_checkpointed * batch,
        logits=int(fp.logits_bytes_per_entry * rows * cols),
        logits_local=int(fp.logits_bytes_per_entry * micro * cols),
    )


def plan_memory(
    footprint: Footprint,
    *,
    batch_size: int,
    world_size: int,
    precision: str = "amp_bf16",
    grad_checkpointing: bool = False,
    local_loss: bool = False,
    accum_freq: int = 1,
    device_memory_gib: float | None = None,
) -> MemoryPlan:
    """Per-rank bytes of ``footprint`` trained at ``batch_size`` per rank on ``world_size`` ranks."""
    return MemoryPlan(
        model=footprint.model,
        batch_size=batch_size,
        world_size=world_size,
        precision=precision,
        grad_checkpointing=grad_checkpointing,
        local_loss=local_loss,
        device_memory_gib=device_memory_gib,
        footprint=footprint,
        ranks={s: _rank_memory(footprint, s, batch_size, world_size, accum_freq) for s in ("DDP", "FSDP")},
    )


def visible_device_memory_gib() -> float | None:
    """The memory of the GPU this process would train on, or None without one."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / GIB


class HostMemoryProbe:
    """Peak resident memory of this process since :meth:`reset` (Linux), for checking a plan on a CPU.

    Run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors go back to the system at once; the peak
    resident set then follows the peak of live tensors plus a little interpreter memory."""

    def __init__(self) -> None:
        self.reset()

    @staticmethod
    def _status(field_name: str) -> int:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {field_name}")

    def reset(self) -> None:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")  # resets the peak resident set (VmHWM) to the current one
        self.baseline = self._status("VmRSS")

    def peak_bytes(self) -> int:
        """Peak resident bytes above the resident set at :meth:`reset`."""
        return self._status("VmHWM") - self.baseline


def plan_for_run(cfg: Any, world_size: int) -> MemoryPlan:
    """The plan of a resolved run config (``clipctl train --dry-run``) at ``world_size`` ranks."""
    footprint = measure_footprint(
        cfg.model,
        precision=cfg.precision,
        lock_image=cfg.lock_image,
        lock_text=cfg.lock_text,
        teacher=cfg.distill_model,
        **cfg.model_overrides(),
    )
    return plan_memory(
        footprint,
        batch_size=cfg.batch_size,
        world_size=world_size,
        precision=cfg.precision,
        grad_checkpointing=cfg.grad_checkpointing,
        local_loss=cfg.local_loss,
        accum_freq=cfg.accum_freq,
        device_memory_gib=cfg.device_memory or visible_device_memory_gib(),
    )
