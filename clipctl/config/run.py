"""The run config of ``clipctl train``: one typed dataclass and the one resolver that fills it.

Precedence: built-in defaults < recipe ``args`` < command-line flags < ``--set key=value``. Field names are
OpenCLIP's option names in snake_case (``--train-data`` -> ``train_data``), so recipe files, ``--set`` keys and
the flags of OpenCLIP's model cards all speak one vocabulary.

After merging, OpenCLIP's model-dependent optimizer defaults are applied to values nobody set
(``lr=5e-4``; ``beta1/beta2/eps`` = 0.9/0.98/1e-6 for ViT names, else 0.9/0.999/1e-8), and the whole config is
validated. Nothing here touches the file system beyond reading a recipe, and nothing builds a model.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from clipctl.errors import ClipctlError, UnknownNameError
from clipctl.runtime.precision import PRECISIONS

LR_SCHEDULERS = ("cosine", "const", "const-cooldown")
DATASET_TYPES = ("auto", "webdataset", "csv", "synthetic", "imagefolder")
REPORT_TO = ("", "tensorboard", "wandb", "all")
REMOTE_SYNC_PROTOCOLS = ("s3", "fsspec")
LOSS_DIST_IMPLS = ("bidir", "shift", "reduce", "gather")
IMAGE_INTERPOLATIONS = ("bicubic", "bilinear", "random")
IMAGE_RESIZE_MODES = ("shortest", "longest", "squash")


def _opt(default: Any, group: str, help: str, **extra: Any) -> Any:
    """A config field with the metadata the CLI builds its flag from (group, help, choices, nargs, aliases)."""
    meta = {"group": group, "help": help, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a training run. ``None`` means "not set" (a default is derived, or the feature is off)."""

    # -- data
    train_data: str | None = _opt(
        None, "data", "Shards (brace patterns, '::' joins sources), a CSV/TSV, or 'synthetic'."
    )
    train_data_upsampling_factors: str | None = _opt(
        None, "data", "Per-source weights like '1::2' (needs --dataset-resampled)."
    )
    val_data: str | None = _opt(None, "data", "Validation shards or CSV (retrieval metrics and val loss).")
    train_num_samples: int | None = _opt(
        None, "data", "Samples per epoch (optional when the shards have sizes.json)."
    )
    val_num_samples: int | None = _opt(None, "data", "Validation samples (optional with sizes.json).")
    dataset_type: str = _opt("auto", "data", "Data format.", choices=DATASET_TYPES)
    dataset_resampled: bool = _opt(False, "data", "Sample shards with replacement (webdataset).")
    csv_separator: str = _opt("\t", "data", "CSV column separator (OpenCLIP's default is a TAB).")
    csv_img_key: str = _opt("filepath", "data", "CSV column with image paths.")
    csv_caption_key: str = _opt("title", "data", "CSV column with captions.")
    csv_label_key: str | None = _opt(
        None, "data", "CSV column with class labels: rows with equal labels are positives (--multi-positive)."
    )
    templates: str | None = _opt(
        None,
        "data",
        "--dataset-type imagefolder: caption templates, 'openai' (default), 'simple' or a file ({c} = class).",
    )
    classnames: str | None = _opt(
        None,
        "data",
        "--dataset-type imagefolder: class names, one per line in the folders' order (default: folder names).",
    )
    workers: int = _opt(4, "data", "Data loader processes per rank.")
    batch_size: int = _opt(64, "data", "Batch size per rank.")
    aug_cfg: dict = _opt(
        {}, "data", "Train augmentation, key=value ... (e.g. use_timm=True scale='(0.5, 1.0)').", nargs="*"
    )
    imagenet_val: str | None = _opt(
        None, "eval", "ImageNet val folder (ImageFolder layout) for zero-shot eval."
    )
    imagenet_v2: str | None = _opt(
        None, "eval", "ImageNet-V2 folder (class-index folders 0..999) for zero-shot eval."
    )
    zeroshot_frequency: int = _opt(2, "eval", "Zero-shot eval every N epochs (and at the last).")
    val_frequency: int = _opt(1, "eval", "Validation every N epochs.")
    # -- model
    model: str = _opt(
        "RN50", "model", "Architecture name, hf-hub:ORG/REPO, local-dir:PATH or a .json config."
    )
    pretrained: str = _opt("", "model", "Pretrained tag or weights file to start from.")
    pretrained_image: bool = _opt(False, "model", "Start the timm image tower from its ImageNet weights.")
    lock_image: bool = _opt(False, "model", "Freeze the image tower.")
    lock_image_unlocked_groups: int = _opt(
        0, "model", "Leave the last N layer groups of the image tower trainable."
    )
    lock_image_freeze_bn_stats: bool = _opt(
        False, "model", "Freeze BatchNorm running stats in the locked image tower."
    )
    lock_text: bool = _opt(False, "model", "Freeze the text tower.")
    lock_text_unlocked_layers: int = _opt(0, "model", "Leave the last N text layers trainable.")
    lock_text_freeze_layer_norm: bool = _opt(
        False, "model", "Also freeze LayerNorms of unlocked text layers."
    )
    force_image_size: list = _opt(
        [], "model", "Override the image size (one or two ints).", nargs="+", item_type=int
    )
    force_patch_dropout: float | None = _opt(None, "model", "Override patch dropout (e.g. 0.0 to disable).")
    force_quick_gelu: bool = _opt(False, "model", "Use QuickGELU (OpenAI weights).")
    force_custom_text: bool = _opt(
        False, "model", "Build the text tower as a separate module (CustomTextCLIP)."
    )
    force_context_length: int | None = _opt(None, "model", "Override the text context length.")
    hf_tokenizer_name: str | None = _opt(
        None, "model", "Use this Hugging Face tokenizer instead of the model's."
    )
    image_mean: list = _opt([], "model", "Override the normalisation mean.", nargs="+", item_type=float)
    image_std: list = _opt([], "model", "Override the normalisation std.", nargs="+", item_type=float)
    image_interpolation: str | None = _opt(
        None, "model", "Resize interpolation.", choices=IMAGE_INTERPOLATIONS
    )
    image_resize_mode: str | None = _opt(None, "model", "Resize mode.", choices=IMAGE_RESIZE_MODES)
    grad_checkpointing: bool = _opt(False, "model", "Recompute activations in backward to save memory.")
    torchcompile: bool = _opt(False, "model", "Compile the model with torch.compile.")
    torchscript: bool = _opt(False, "model", "Not supported (use --torchcompile).")
    trace: bool = _opt(False, "model", "Not supported (use --torchcompile).")
    use_bnb_linear: str | None = _opt(
        None, "model", "Replace MLP linears with this bitsandbytes class (needs bitsandbytes)."
    )
    # -- optimisation
    opt: str = _opt("adamw", "optim", "Optimizer: adamw, or timm/<name> for timm's create_optimizer_v2.")
    lr: float | None = _opt(None, "optim", "Learning rate (default 5e-4).")
    beta1: float | None = _opt(None, "optim", "Adam beta1 (default 0.9).")
    beta2: float | None = _opt(None, "optim", "Adam beta2 (default 0.98 for ViT models, else 0.999).")
    eps: float | None = _opt(None, "optim", "Adam epsilon (default 1e-6 for ViT models, else 1e-8).")
    momentum: float | None = _opt(None, "optim", "Momentum (timm optimizers).")
    wd: float = _opt(0.2, "optim", "Weight decay (not applied to gains, biases and logit scale).")
    warmup: int = _opt(10000, "optim", "Linear warmup steps.")
    epochs: int = _opt(32, "optim", "Number of epochs.")
    epochs_cooldown: int | None = _opt(None, "optim", "Cooldown epochs at the end (const-cooldown).")
    lr_scheduler: str = _opt("cosine", "optim", "Learning-rate schedule after warmup.", choices=LR_SCHEDULERS)
    lr_cooldown_power: float = _opt(1.0, "optim", "Cooldown decay power (1 = linear).")
    lr_cooldown_end: float = _opt(0.0, "optim", "Learning rate at the end of the cooldown.")
    skip_scheduler: bool = _opt(False, "optim", "Keep the learning rate constant at --lr.")
    accum_freq: int = _opt(1, "optim", "Accumulate gradients over N batches per optimizer step.")
    grad_clip_norm: float | None = _opt(
        None, "optim", "Clip the gradient norm to this value.", aliases=("--clip-grad-norm",)
    )
    precision: str = _opt(
        "amp", "optim", "Numeric precision (on CPU, fp16 'amp' runs as fp32).", choices=PRECISIONS
    )
    use_bn_sync: bool = _opt(False, "optim", "Synchronise BatchNorm across ranks.")
    seed: int = _opt(0, "optim", "Random seed (each rank adds its rank).")
    # -- loss
    local_loss: bool = _opt(
        False, "loss", "Score local rows against the global batch (memory linear in batch)."
    )
    gather_with_grad: bool = _opt(
        False, "loss", "All-gather features with gradient (exact gradients with --local-loss)."
    )
    siglip: bool = _opt(False, "loss", "Sigmoid loss (SigLIP).")
    multi_positive: bool = _opt(
        False, "loss", "Pairs of the global batch sharing a caption (or a class label) count as positives."
    )
    loss_dist_impl: str | None = _opt(None, "loss", "SigLIP distributed exchange.", choices=LOSS_DIST_IMPLS)
    coca_caption_loss_weight: float = _opt(2.0, "loss", "CoCa caption loss weight.")
    coca_contrastive_loss_weight: float = _opt(1.0, "loss", "CoCa contrastive loss weight.")
    distill_model: str | None = _opt(None, "loss", "Teacher architecture for distillation.")
    distill_pretrained: str | None = _opt(None, "loss", "Teacher weights (tag or file).")
    # -- distributed
    device: str | None = _opt(None, "distributed", "cuda, cpu, ... (default: cuda when available).")
    dist_url: str | None = _opt(None, "distributed", "Process group init URL (default env://).")
    dist_backend: str | None = _opt(
        None, "distributed", "Process group backend (default nccl on GPU, gloo on CPU)."
    )
    horovod: bool = _opt(False, "distributed", "Not supported: launch with torchrun or srun.")
    ddp_static_graph: bool = _opt(False, "distributed", "DDP static_graph=True.")
    no_set_device_rank: bool = _opt(False, "distributed", "Do not pin each rank to cuda:LOCAL_RANK.")
    dist_timeout: float = _opt(
        1800.0,
        "distributed",
        "Seconds a rank waits in a collective before the job stops with an error (a rank that died or hangs).",
    )
    fsdp: bool = _opt(
        False,
        "distributed",
        "Shard parameters, gradients and optimizer state over the ranks (FSDP2); checkpoints become "
        "sharded folders.",
    )
    fsdp_reshard_after_forward: bool = _opt(
        True,
        "distributed",
        "With --fsdp: free each block's gathered parameters after its forward and gather them again for "
        "backward (less memory, more communication).",
    )
    fsdp_cpu_offload: bool = _opt(
        False,
        "distributed",
        "With --fsdp: keep sharded parameters, gradients and optimizer state in host memory.",
    )
    device_memory: float | None = _opt(
        None, "distributed", "GiB per device for --dry-run's memory plan (default: the visible GPU's memory)."
    )
    # -- logging
    logs: str = _opt("./runs", "logging", "Folder holding run folders ('none' saves nothing).")
    log_local: bool = _opt(False, "logging", "Write out.log on every rank, not only rank 0.")
    name: str | None = _opt(None, "logging", "Run name (default: date-model-lr-batch-workers-precision).")
    log_every_n_steps: int = _opt(100, "logging", "Log every N optimizer steps.")
    report_to: str = _opt("", "logging", "tensorboard, wandb or all (comma lists accepted).")
    wandb_notes: str = _opt("", "logging", "wandb notes.")
    wandb_project_name: str = _opt("open-clip", "logging", "wandb project.")
    debug: bool = _opt(False, "logging", "Debug logging.")
    copy_codebase: bool = _opt(False, "logging", "Not supported: clipctl is an installed package.")
    # -- checkpoints
    save_frequency: int = _opt(
        1, "checkpoint", "Save checkpoints/epoch_K.pt every N epochs (and at the last); 0: only at the last."
    )
    save_most_recent: bool = _opt(False, "checkpoint", "Also keep checkpoints/epoch_latest.pt up to date.")
    save_every_n_steps: int | None = _opt(
        None, "checkpoint", "Also checkpoint every N steps inside an epoch (mid-epoch resume)."
    )
    delete_previous_checkpoint: bool = _opt(
        False, "checkpoint", "Delete epoch_{K-1}.pt after saving epoch_K.pt."
    )
    async_checkpoint: bool = _opt(
        False, "checkpoint", "With --fsdp: write checkpoints in the background while training continues."
    )
    resume: str | None = _opt(None, "checkpoint", "Checkpoint file to resume from, or 'latest'.")
    remote_sync: str | None = _opt(
        None, "checkpoint", "Copy the run folder to this s3:// or fsspec URL periodically."
    )
    remote_sync_frequency: int = _opt(300, "checkpoint", "Seconds between remote syncs.")
    remote_sync_protocol: str = _opt(
        "s3", "checkpoint", "Remote sync protocol.", choices=REMOTE_SYNC_PROTOCOLS
    )
    cache_dir: str | None = _opt(None, "checkpoint", "Cache folder for downloaded weights.")
    # -- provenance (set by the resolver)
    recipe: str | None = _opt(None, "provenance", "Recipe the run was resolved from.", cli=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()}

    @property
    def distill(self) -> bool:
        return bool(self.distill_model)

    def model_overrides(self) -> dict[str, Any]:
        """The ``force_*`` keyword arguments of ``create_model`` this run asks for (training and its memory plan
        build the same model)."""
        sizes = list(self.force_image_size)
        return {
            "force_quick_gelu": self.force_quick_gelu,
            "force_custom_text": self.force_custom_text,
            "force_patch_dropout": self.force_patch_dropout,
            "force_image_size": None if not sizes else sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1]),
            "force_context_length": self.force_context_length,
        }


def _plain(value: Any) -> Any:
    """YAML-safe: tuples become lists, recursively."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = get_type_hints(TrainConfig)


def config_keys() -> list[str]:
    return list(FIELDS)


def _base_type(name: str) -> tuple[type, bool]:
    """(underlying type, optional?) of a field's annotation."""
    hint = _HINTS[name]
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) is not None and args and type(None) in get_args(hint):
        return args[0], True
    return hint, False


def coerce_value(key: str, value: Any, *, source: str) -> Any:
    """Turn a value from YAML, a flag or ``--set`` into the field's type; raise ClipctlError naming ``source``."""
    if key not in FIELDS:
        raise UnknownNameError(
            "run config key", key, FIELDS, hint=f"from {source}; see `clipctl train --help`"
        )
    kind, optional = _base_type(key)
    if value is None:
        if optional:
            return None
        if kind in (list, dict):
            return kind()
        raise ClipctlError(f"{key} cannot be empty ({source})")
    if key == "aug_cfg":
        return _coerce_aug_cfg(value, source)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in (
                "true",
                "yes",
                "1",
                "on",
                "false",
                "no",
                "0",
                "off",
            ):
                return value.lower() in ("true", "yes", "1", "on")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(str(value).replace("_", ""))
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is list:
            item_type = FIELDS[key].metadata.get("item_type", str)
            items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
            return [item_type(v) for v in items]
        if kind is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ClipctlError(f"{key} must be {_type_words(kind)}, got {value!r} ({source})") from None
    return value


def _type_words(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", list: "a list", str: "a string"}.get(
        kind, kind.__name__
    )


def _coerce_aug_cfg(value: Any, source: str) -> dict[str, Any]:
    from clipctl.transforms import parse_aug_cfg

    if isinstance(value, dict):
        items = [f"{k}={v!r}" if not isinstance(v, str) else f"{k}={v}" for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = str(value).split()
    return parse_aug_cfg(items)


def parse_set_items(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "aug_cfg={re_prob: 0.4}"]`` -> dict; values are YAML scalars/flows."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ClipctlError(f"malformed --set {item!r}: expected key=value, e.g. --set lr=1e-3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        parsed[key] = value
    return parsed


def default_optimizer_params(model_name: str) -> dict[str, float]:
    """OpenCLIP's model-dependent AdamW defaults (transformer image towers like a smaller beta2 and larger eps)."""
    if "vit" in model_name.lower():
        return {"lr": 5.0e-4, "beta1": 0.9, "beta2": 0.98, "eps": 1.0e-6}
    return {"lr": 5.0e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1.0e-8}


def _elastic_max_restarts() -> int:
    """``torchrun --max-restarts`` as torchrun tells its workers (0 outside torchrun)."""
    try:
        return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    except ValueError:
        return 0


def default_run_name(cfg: TrainConfig) -> str:
    stamp = datetime.datetime.now().strftime("%Y_%m_%d-%H_%M_%S")
    model = cfg.model.replace("/", "-").replace(":", "-")
    return f"{stamp}-model_{model}-lr_{cfg.lr}-b_{cfg.batch_size}-j_{cfg.workers}-p_{cfg.precision}"


def resolve_run_config(
    recipe: str | None,
    cli_overrides: dict[str, Any],
    set_items: list[str],
    *,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Merge defaults < ``base`` (a saved run config) < recipe < CLI flags < ``--set`` into a validated config.

    ``cli_overrides`` holds only the flags the user actually passed (snake_case keys).
    """
    values: dict[str, Any] = {}
    layers: list[tuple[str, dict[str, Any]]] = []
    if base:
        layers.append(("the saved run config", base))
    recipe_name = None
    if recipe:
        from clipctl.config.recipes import load_recipe

        loaded = load_recipe(recipe)
        recipe_name = loaded.name
        layers.append((f"recipe {loaded.name}", loaded.args))
    layers.append(("the command line", cli_overrides))
    layers.append(("--set", parse_set_items(set_items)))
    for source, layer in layers:
        for key, value in layer.items():
            key = key.replace("-", "_")
            values[key] = coerce_value(key, value, source=source)
    if recipe_name is not None:
        values["recipe"] = recipe_name
    cfg = TrainConfig(**values)
    if not cfg.opt.startswith("timm"):
        for key, default in default_optimizer_params(cfg.model).items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, default)
    validate_run_config(cfg)
    if not cfg.name:
        if _elastic_max_restarts() > 0:
            raise ClipctlError(
                "torchrun --max-restarts needs a fixed --name: a restarted job finds its checkpoints in "
                "runs/NAME, and a generated name (with the start time) differs on every restart"
            )
        cfg.name = default_run_name(cfg)
    return cfg


def _choice(cfg: TrainConfig, key: str) -> None:
    value = getattr(cfg, key)
    choices = FIELDS[key].metadata.get("choices")
    if choices and value is not None and value not in choices:
        raise UnknownNameError(key.replace("_", "-"), value, choices)


def report_targets(report_to: str) -> set[str]:
    targets = {t.strip() for t in (report_to or "").split(",") if t.strip()}
    if "all" in targets:
        targets = (targets - {"all"}) | {"tensorboard", "wandb"}
    return targets


def validate_run_config(cfg: TrainConfig) -> None:
    """Checks that need no files, processes or models. Raise ClipctlError with one line on the first problem."""
    for key, spec in FIELDS.items():
        if spec.metadata.get("choices"):
            _choice(cfg, key)
    unknown = report_targets(cfg.report_to) - {"tensorboard", "wandb"}
    if unknown:
        raise UnknownNameError("--report-to target", sorted(unknown)[0], ("tensorboard", "wandb", "all"))
    refusals = {
        "horovod": "--horovod is not supported: launch with torchrun or srun (torch.distributed) instead",
        "torchscript": "--torchscript is not supported: use --torchcompile",
        "trace": "--trace is not supported: use --torchcompile",
        "copy_codebase": "--copy-codebase is not supported: clipctl runs from its installed package; "
        "the resolved config is saved in runs/NAME/config.yaml",
    }
    for key, message in refusals.items():
        if getattr(cfg, key):
            raise ClipctlError(message)
    positive = ("batch_size", "epochs", "accum_freq", "log_every_n_steps")
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ClipctlError(f"--{key.replace('_', '-')} must be at least 1 (got {getattr(cfg, key)})")
    # save_frequency 0 is OpenCLIP's "no per-epoch checkpoints" (the last epoch is still saved).
    non_negative = (
        "workers",
        "warmup",
        "zeroshot_frequency",
        "val_frequency",
        "remote_sync_frequency",
        "save_frequency",
    )
    for key in non_negative:
        if getattr(cfg, key) < 0:
            raise ClipctlError(f"--{key.replace('_', '-')} must not be negative (got {getattr(cfg, key)})")
    if cfg.save_every_n_steps is not None and cfg.save_every_n_steps < 1:
        raise ClipctlError(f"--save-every-n-steps must be at least 1 (got {cfg.save_every_n_steps})")
    for key in ("lr", "wd", "eps"):
        value = getattr(cfg, key)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ClipctlError(f"--{key} must be a non-negative number (got {value})")
    if cfg.grad_clip_norm is not None and cfg.grad_clip_norm <= 0:
        raise ClipctlError(f"--grad-clip-norm must be positive (got {cfg.grad_clip_norm})")
    if cfg.lr_scheduler == "const-cooldown":
        if cfg.epochs_cooldown is None:
            raise ClipctlError("--lr-scheduler const-cooldown needs --epochs-cooldown N")
        if not 0 < cfg.epochs_cooldown <= cfg.epochs:
            raise ClipctlError(f"--epochs-cooldown must be between 1 and --epochs {cfg.epochs}")
    if bool(cfg.distill_model) != bool(cfg.distill_pretrained):
        raise ClipctlError("distillation needs both --distill-model and --distill-pretrained (the teacher)")
    if cfg.distill_model:
        if cfg.accum_freq != 1:
            raise ClipctlError("distillation does not support --accum-freq > 1")
        if "coca" in cfg.model.lower():
            raise ClipctlError("distillation into a CoCa model is not supported")
        if cfg.siglip:
            raise ClipctlError("distillation uses the contrastive loss; drop --siglip")
    _check_label_options(cfg)
    if cfg.force_image_size and len(cfg.force_image_size) not in (1, 2):
        raise ClipctlError("--force-image-size takes one or two integers")
    for key in ("image_mean", "image_std"):
        if getattr(cfg, key) and len(getattr(cfg, key)) not in (1, 3):
            raise ClipctlError(f"--{key.replace('_', '-')} takes one or three numbers")
    if cfg.resume is not None and not str(cfg.resume).strip():
        raise ClipctlError("--resume needs a checkpoint path or 'latest'")
    if cfg.resume == "latest" and str(cfg.logs).lower() == "none":
        raise ClipctlError("--resume latest needs a run folder: --logs none saves no checkpoints")
    _check_sharding(cfg)


# --precision values that cast the weights themselves: FSDP's mixed-precision policy would cast them again
_CAST_PRECISIONS = ("fp16", "bf16", "pure_fp16", "pure_bf16")


def _check_sharding(cfg: TrainConfig) -> None:
    """--fsdp and the settings that only mean something with it, or do not compose with it."""
    if not (math.isfinite(cfg.dist_timeout) and cfg.dist_timeout > 0):
        raise ClipctlError(f"--dist-timeout must be a positive number of seconds (got {cfg.dist_timeout})")
    if cfg.device_memory is not None and not cfg.device_memory > 0:
        raise ClipctlError(f"--device-memory must be a positive number of GiB (got {cfg.device_memory})")
    if not cfg.fsdp:
        for key in ("fsdp_cpu_offload", "async_checkpoint"):
            if getattr(cfg, key):
                raise ClipctlError(f"--{key.replace('_', '-')} needs --fsdp")
        return
    if cfg.precision in _CAST_PRECISIONS:
        raise ClipctlError(
            f"--fsdp does not work with --precision {cfg.precision} (it casts the weights themselves): use "
            "amp_bf16 (bf16 compute, fp32 master weights), amp or fp32"
        )
    if cfg.use_bnb_linear:
        raise ClipctlError(
            "--fsdp does not work with --use-bnb-linear (bitsandbytes layers cannot be sharded)"
        )


def _check_label_options(cfg: TrainConfig) -> None:
    """Options that would be silently ignored are refused instead."""
    if cfg.csv_label_key and not cfg.multi_positive:
        raise ClipctlError(
            "--csv-label-key only takes effect with --multi-positive (pairs with equal labels are positives)"
        )
    for key in ("templates", "classnames"):
        if getattr(cfg, key) and cfg.dataset_type != "imagefolder":
            raise ClipctlError(
                f"--{key} turns class folders into captions: it goes with --dataset-type imagefolder"
            )
    if cfg.dataset_type == "imagefolder" and cfg.csv_label_key:
        raise ClipctlError("--csv-label-key reads a CSV; an imagefolder's labels are its class folders")


def load_run_config_file(path: str) -> dict[str, Any]:
    """Read a saved ``config.yaml`` (a flat mapping of run-config keys)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as err:
        raise ClipctlError(f"cannot read run config {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ClipctlError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(data, dict):
        raise ClipctlError(f"{path} does not hold a run config mapping")
    return data


def dump_run_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None, allow_unicode=True)
