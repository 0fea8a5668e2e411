"""What `clipctl models list|show` reports: the registry's architectures and pretrained tags, and for one model
its config, size, cost and tags. Plain data; the CLI only renders it."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from typing import Any

from clipctl.constants import OPENAI_DATASET_MEAN


@dataclass(frozen=True)
class PretrainedRow:
    model: str
    pretrained: str
    hf_hub_id: str


@dataclass(frozen=True)
class TagInfo:
    """One pretrained tag of a model, with its preprocessing in the few words a table has room for."""

    tag: str
    hf_hub_id: str
    mean_std: str  # "openai" for OpenAI's statistics, else the mean as written
    resize: str  # "resize_mode/interpolation"
    quick_gelu: bool
    config: dict[str, Any]


@dataclass(frozen=True)
class ModelDescription:
    name: str
    model_class: str
    config: dict[str, Any]
    stats: Any  # clipctl.models.stats.ModelStats
    tags: list[TagInfo]

    @property
    def total_gflops(self) -> float | None:
        image, text = self.stats.image_gflops, self.stats.text_gflops
        return None if image is None or text is None else image + text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.model_class,
            "config": self.config,
            "stats": asdict(self.stats),
            "pretrained": {t.tag: t.config for t in self.tags},
        }


def _matches(name: str, pattern: str | None) -> bool:
    return pattern is None or fnmatch.fnmatch(name.lower(), pattern.lower())


def architectures(pattern: str | None = None) -> list[tuple[str, list[str]]]:
    """(name, pretrained tags) of every registered architecture whose name matches the glob ``pattern``."""
    from clipctl.config.pretrained import list_pretrained_tags_by_model
    from clipctl.config.registry import list_models

    return [(name, list_pretrained_tags_by_model(name)) for name in list_models() if _matches(name, pattern)]


def pretrained_rows(pattern: str | None = None) -> list[PretrainedRow]:
    """Every model:tag pair (with its Hub repo) whose model name matches ``pattern``."""
    from clipctl.config.pretrained import get_pretrained_cfg, list_pretrained

    return [
        PretrainedRow(m, t, get_pretrained_cfg(m, t).get("hf_hub_id") or "")
        for m, t in list_pretrained()
        if _matches(m, pattern)
    ]


def _tag_info(tag: str, cfg: dict[str, Any]) -> TagInfo:
    mean = cfg.get("mean")
    is_openai = bool(mean) and all(abs(a - b) < 1e-3 for a, b in zip(mean, OPENAI_DATASET_MEAN, strict=False))
    return TagInfo(
        tag=tag,
        hf_hub_id=cfg.get("hf_hub_id") or "",
        mean_std="openai" if is_openai else str(mean),
        resize=f"{cfg.get('resize_mode')}/{cfg.get('interpolation')}",
        quick_gelu=bool(cfg.get("quick_gelu")),
        config=cfg,
    )


def describe_model(name: str) -> ModelDescription:
    """Config, parameter counts, GFLOPs and pretrained tags of ``name`` (any name the resolver takes). The
    model is built on the meta device: no weights are read or fetched."""
    from clipctl.api import create_model
    from clipctl.config.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model
    from clipctl.config.resolver import resolve_model
    from clipctl.models.stats import model_stats

    resolved = resolve_model(name)
    model = create_model(name, device="meta")
    tags = [
        _tag_info(t, get_pretrained_cfg(resolved.name, t))
        for t in list_pretrained_tags_by_model(resolved.name)
    ]
    return ModelDescription(resolved.name, type(model).__name__, resolved.model_cfg, model_stats(model), tags)
