"""Benchmark: `clipctl embed` against the OpenCLIP README loop, same model, same weights, one run.

    python bench/embed.py                      # 2000 generated JPEGs, ViT-B-32, batch 32
    python bench/embed.py --num-images 512     # quicker

Measures, on ViT-B-32 with random weights (the same weights everywhere):
  - the README loop: PIL open -> preprocess -> encode_image in batches -> normalise (OpenCLIP, this process);
  - its decode + preprocess alone, and encode_image alone (float32, and with the weights cast to bfloat16);
  - `clipctl embed` in float32 (embeddings compared with the README loop's), `--precision bf16` and
    `--fast-decode` (minimum cosine to the README loop's float32 embeddings).
The JPEGs (500-1500 px; gradients, noise and shapes) are generated once into --cache-dir.
OpenCLIP is imported here only, as the reference; clipctl never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _make_image(args: tuple[str, int]) -> None:
    from PIL import Image, ImageDraw, ImageFilter

    path, index = args
    rng = np.random.default_rng(1000 + index)
    width, height = (int(v) for v in rng.integers(500, 1501, size=2))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (x / width * rng.uniform(0.2, 1.0) + y / height * rng.uniform(0.0, 0.8))[..., None]
    pixels = start * (1 - t) + end * t + rng.normal(0, rng.uniform(3, 18), (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 14))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = (draw.ellipse, draw.rectangle, draw.polygon)[int(rng.integers(0, 3))]
        if shape is draw.polygon:
            shape([(x0, y0), (x1, y0 + (y1 - y0) // 3), ((x0 + x1) // 2, y1)], fill=colour)
        else:
            shape([x0, y0, x1, y1], fill=colour)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
    tmp = path + ".tmp"
    image.save(tmp, format="JPEG", quality=int(rng.integers(80, 96)))
    os.replace(tmp, path)


def generate_images(folder: Path, count: int, processes: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"img_{i:05d}.jpg") for i in range(count)]
    todo = [(p, i) for i, p in enumerate(paths) if not os.path.exists(p)]
    if todo:
        print(f"generating {len(todo)} JPEGs into {folder} ...", flush=True)
        with Pool(processes) as pool:
            pool.map(_make_image, todo, chunksize=8)
    return paths


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (DataLoader workers are joined, so they count)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def readme_loop(model, preprocess, paths, batch_size):
    """The OpenCLIP README's loop, batched: returns (normalised float32 embeddings, seconds)."""
    import torch
    from PIL import Image

    chunks = []
    start = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        images = torch.stack([preprocess(Image.open(p)) for p in paths[i : i + batch_size]])
        with torch.no_grad():
            features = model.encode_image(images)
            features /= features.norm(dim=-1, keepdim=True)
        chunks.append(features)
    return torch.cat(chunks).numpy(), time.perf_counter() - start


def decode_only(preprocess, paths):
    import torch
    from PIL import Image

    start = time.perf_counter()
    tensors = [preprocess(Image.open(p)) for p in paths]
    return torch.stack(tensors), time.perf_counter() - start


def encode_only(model, pixels, batch_size, dtype):
    """Images/s of encode_image alone on ready tensors (first batch is a warm-up)."""
    import torch

    batches = [pixels[i : i + batch_size].to(dtype) for i in range(0, len(pixels), batch_size)]
    batches = [b for b in batches if len(b) == batch_size]
    with torch.no_grad():
        model.encode_image(batches[0])
        start = time.perf_counter()
        for batch in batches[1:]:
            model.encode_image(batch)
    return (len(batches) - 1) * batch_size / (time.perf_counter() - start)


def load_clipctl_rows(out: Path, paths: list[str]) -> np.ndarray:
    import pandas as pd

    frame = pd.read_parquet(out).set_index("path")
    return np.stack(frame.loc[paths].embedding.to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/clipctl/bench-embed"))
    parser.add_argument("--workers", type=int, default=None, help="clipctl embed --workers (default: auto)")
    parser.add_argument(
        "--encode-sample", type=int, default=192, help="images used for the encode-only rates"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    args = parser.parse_args()

    import open_clip
    import torch

    from clipctl.embed import EmbedOptions, embed_images
    from clipctl.runtime.cpu import describe_cpu

    cores = len(os.sched_getaffinity(0))
    cache = Path(args.cache_dir)
    paths = generate_images(cache / "jpegs", args.num_images, cores)
    listing = cache / f"list-{args.num_images}.txt"  # the first N images, as a clipctl list file
    listing.write_text("".join(p + "\n" for p in paths))

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(args.model)
    model.eval()
    weights = cache / f"{args.model}-random-seed0.pt"
    if not weights.exists():
        torch.save(model.state_dict(), str(weights) + ".tmp")
        os.replace(str(weights) + ".tmp", weights)
    model.load_state_dict(torch.load(weights, weights_only=True))

    load_before = os.getloadavg()[0]
    results: dict[str, dict] = {}
    print(
        f"{len(paths)} JPEGs, {args.model}, batch {args.batch_size}, {cores} cores, torch threads {torch.get_num_threads()}"
    )
    print(f"cpu: {describe_cpu()}")

    cpu = cpu_seconds()
    reference, seconds = readme_loop(model, preprocess, paths, args.batch_size)
    results["readme_loop"] = {"images_per_s": len(paths) / seconds}
    results["readme_loop"]["cpu_ms_per_image"] = (cpu_seconds() - cpu) * 1000 / len(paths)
    print(f"  README loop          {len(paths) / seconds:7.2f} images/s", flush=True)

    cpu = cpu_seconds()
    pixels, seconds = decode_only(preprocess, paths[: args.encode_sample])
    results["decode_preprocess"] = {"images_per_s": len(pixels) / seconds}
    results["decode_preprocess"]["cpu_ms_per_image"] = (cpu_seconds() - cpu) * 1000 / len(pixels)
    results["encode_only_fp32"] = {"images_per_s": encode_only(model, pixels, args.batch_size, torch.float32)}
    model_bf16, _, _ = open_clip.create_model_and_transforms(args.model, precision="bf16")
    model_bf16.load_state_dict(torch.load(weights, weights_only=True))
    open_clip.convert_weights_to_lp(model_bf16.eval(), torch.bfloat16)
    results["encode_only_bf16_weights"] = {
        "images_per_s": encode_only(model_bf16, pixels, args.batch_size, torch.bfloat16)
    }
    del model_bf16
    for key in ("decode_preprocess", "encode_only_fp32", "encode_only_bf16_weights"):
        print(f"  {key:20s} {results[key]['images_per_s']:7.2f} images/s", flush=True)

    # The README loop on clipctl's own model (first batches only): clipctl embed must add nothing to the
    # model's own difference from OpenCLIP's.
    import clipctl

    own, _, own_preprocess = clipctl.create_model_and_transforms(args.model, pretrained=str(weights))
    own.eval()
    sample = paths[: 2 * args.batch_size]
    own_reference, _ = readme_loop(own, own_preprocess, sample, args.batch_size)
    del own
    model_diff = float(np.abs(own_reference - reference[: len(sample)]).max())
    results["clipctl_model_vs_openclip"] = {"max_abs_diff": model_diff}
    print(f"  clipctl's {args.model} vs OpenCLIP's, README loop: max abs diff {model_diff:.2e}", flush=True)

    runs = {
        "clipctl_fp32": {"precision": "fp32"},
        "clipctl_bf16": {"precision": "bf16"},
        "clipctl_bf16_fast_decode": {"precision": "bf16", "fast_decode": True},
        "clipctl_fp32_fast_decode": {"precision": "fp32", "fast_decode": True},
    }
    out_dir = cache / "outputs"
    out_dir.mkdir(exist_ok=True)
    for name, kwargs in runs.items():
        out = out_dir / f"{name}-{args.num_images}.parquet"
        for stale in (out, out.with_name(out.name + ".errors.csv")):
            stale.unlink(missing_ok=True)
        cpu = cpu_seconds()
        options = EmbedOptions(
            model=args.model,
            pretrained=str(weights),
            batch_size=args.batch_size,
            workers=args.workers,
            **kwargs,
        )
        summary = embed_images(listing, out, options)
        cpu = (cpu_seconds() - cpu) * 1000 / summary.embedded
        got = load_clipctl_rows(out, paths)
        cosine = (
            (got * reference).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
        )
        own_rows = got[: len(sample)]
        results[name] = {
            "images_per_s": summary.per_second,
            "cpu_ms_per_image": cpu,  # model loading included
            "identical_to_readme_loop_on_clipctl_model": bool(np.array_equal(own_rows, own_reference)),
            "max_abs_diff_to_readme_loop_on_clipctl_model": float(np.abs(own_rows - own_reference).max()),
            "images_per_s_with_model_load": summary.embedded / summary.seconds,
            "workers": summary.workers,
            "encode_in_workers": summary.encode_in_workers,
            "identical_to_readme": bool(np.array_equal(got, reference)),
            "max_abs_diff": float(np.abs(got - reference).max()),
            "min_cosine": float(cosine.min()),
        }
        print(f"  {name:20s} {summary.per_second:7.2f} images/s  min cosine {cosine.min():.6f}", flush=True)

    readme = results["readme_loop"]["images_per_s"]
    encode = results["encode_only_fp32"]["images_per_s"]
    print()
    print("| what | images/s | × README loop | ÷ encode-only fp32 | CPU ms/image | vs README embeddings |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, row in results.items():
        if "images_per_s" not in row:
            continue
        rate = row["images_per_s"]
        if "min_cosine" in row:
            exact = "identical" if row["identical_to_readme"] else f"max abs diff {row['max_abs_diff']:.2e}"
            own = row["identical_to_readme_loop_on_clipctl_model"]
            own = "identical" if own else f"{row['max_abs_diff_to_readme_loop_on_clipctl_model']:.2e}"
            compare = f"{exact}; min cosine {row['min_cosine']:.6f}; vs same loop on clipctl's model: {own}"
        else:
            compare = ""
        cpu = f"{row['cpu_ms_per_image']:.0f}" if "cpu_ms_per_image" in row else ""
        print(f"| {name} | {rate:.2f} | {rate / readme:.2f}× | {rate / encode:.0%} | {cpu} | {compare} |")
    load_after = os.getloadavg()[0]
    print(f"\nload average before/after: {load_before:.2f}/{load_after:.2f} on {cores} cores")
    print(
        "targets: clipctl_fp32 identical and >= 85% of encode-only; clipctl_bf16 >= 2.5x README, min cosine >= 0.999"
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
