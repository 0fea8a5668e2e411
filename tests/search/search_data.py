"""Builders shared by the search tests: a tiny model with saved weights, folders of generated shape images,
their embeddings (through `clipctl embed`'s job) and indexes over them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from clipctl.data.synth import class_folders
from clipctl.data.synth_shapes import draw_scene

MODEL = "tiny-ViT-8-64"  # in the registry: indexes record it by name and queries can load it again


def tiny_weights(folder: Path) -> Path:
    import clipctl

    torch.manual_seed(0)
    path = folder / "tiny-weights.pt"
    torch.save(clipctl.create_model(MODEL).state_dict(), path)
    return path


def shape_images(folder: Path, per_class: int, classes: int = 8, size: int = 64, seed: int = 0) -> list[Path]:
    """``per_class`` PNGs of each of the first ``classes`` colour x shape classes, one sub-folder per class."""
    paths = []
    for label, (name, colour, shape) in enumerate(class_folders()[:classes]):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image, _ = draw_scene(np.random.default_rng([seed, label, i]), size, colour, shape)
            path = folder / name / f"{i:03d}.png"
            image.save(path)
            paths.append(path)
    return paths


def embed_options(weights: Path, **kwargs):  # noqa: ANN201 - EmbedOptions
    from clipctl.embed.job import EmbedOptions

    return EmbedOptions(model=MODEL, pretrained=str(weights), workers=0, batch_size=64, **kwargs)


def embed_folder(images: Path, out: Path, weights: Path, **kwargs) -> Path:
    from clipctl.embed import embed_images

    embed_images(images, out, embed_options(weights, **kwargs))
    return out


def indexed_shapes(
    root: Path, per_class: int, classes: int = 8, index: str = "idx"
) -> tuple[Path, list[Path]]:
    """Weights, ``root/images`` of generated shapes, their embeddings ``root/emb.parquet`` and an exact index
    ``root/INDEX``; returns the weights file and the image paths."""
    weights = tiny_weights(root)
    paths = shape_images(root / "images", per_class=per_class, classes=classes)
    from clipctl.search import build_index

    build_index(embed_folder(root / "images", root / "emb.parquet", weights), root / index)
    return weights, paths


def random_parquet(path: Path, vectors: np.ndarray, *, start: int = 0, settings: dict | None = None) -> Path:
    """A Parquet file shaped like `clipctl embed` output, with made-up keys ``img/N.jpg`` from ``start``."""
    dim = vectors.shape[1]
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).reshape(-1)), dim)
    keys = [f"img/{i}.jpg" for i in range(start, start + len(vectors))]
    table = pa.table({"path": keys, "embedding": embedding})
    meta = {"model": MODEL, "pretrained": "", "precision": "fp32", "normalize": "true", "modality": "image"}
    meta.update(settings or {})
    pq.write_table(table.replace_schema_metadata({**meta, "dim": str(dim)}), path)
    return path


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Plain numpy: the ids of the k rows with the highest cosine similarity, best first."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]
