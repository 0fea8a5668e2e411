"""Training-loader throughput per loader core: clipctl's loader against webdataset + OpenCLIP's transforms.

Three sides read the same generated 256 px JPEG shards (img2dataset layout) with the ViT-B-32 training
transform (RandomResizedCrop 224 bicubic, ToTensor, Normalize) and the CLIP tokenizer, batch 32, one loader
worker, each in a fresh process, alternating order, ``--repeats`` times:

- ``clipctl``: this tree's loader (simplejpeg decode, uint8 batches; the main process turns them into floats
  as the trainer does, so its cost is counted, on the main process's side);
- ``clipctl-float-pil``: the same loader with PIL decoding, float batches and ``torch.manual_seed`` per sample,
  i.e. the loader before simplejpeg, crop-before-convert, uint8 batches and CPU-only seeding;
- ``webdataset+openclip``: ``wds.WebDataset`` -> shuffle -> decode("pilrgb") -> OpenCLIP's ``preprocess_train``
  and tokenizer -> batched, as OpenCLIP's own pipeline does.

After ``--warmup-batches``, it reports images/s (wall) and images per CPU-second of the worker process (the
figure that says how many loader cores a GPU needs; it depends little on other load on the machine) and the
main process's CPU-seconds per image.

    python bench/loader.py --num-images 2000 --batches 40 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import ROOT, _env, cpu_description, make_data  # noqa: E402

SIDES = ("clipctl", "clipctl-float-pil", "webdataset+openclip")
TICKS = os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """CPU seconds used so far by this process's live children (the loader workers)."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def _seeded_call_before(transform, value, seed):
    """seeded_call as it was: it also ran torch.manual_seed, which seeds every accelerator backend (same draws)."""
    import torch

    from clipctl.train.data_common import seeded_call

    def with_full_seed(image):
        torch.manual_seed(seed)
        return transform(image)

    return seeded_call(with_full_seed, value, seed)


def _clipctl_loader(shards: str, num_images: int, batch_size: int, fast: bool):
    import types

    import torch

    from clipctl.api import get_tokenizer
    from clipctl.train import pixels
    from clipctl.train.data import build_train_data
    from clipctl.transforms import image_transform

    preprocess = image_transform(224, is_train=True)  # ViT-B-32's: OpenAI mean/std, bicubic crops
    if not fast:  # the loader as it was: PIL for every image, torch.manual_seed per sample, float batches
        from clipctl.train import data_wds

        pixels._decode_jpeg = lambda data: None
        data_wds.seeded_call = _seeded_call_before
    cfg = types.SimpleNamespace(
        train_data=shards, dataset_type="webdataset", batch_size=batch_size, workers=1, seed=0,
        train_num_samples=num_images, dataset_resampled=False,
    )  # fmt: skip
    info = build_train_data(cfg, preprocess, get_tokenizer("ViT-B-32"), uint8_batches=fast)
    cpu = torch.device("cpu")
    return (info.to_input(images, cpu) for images, _ in info.dataloader)


def _openclip_loader(shards: str, batch_size: int):
    import open_clip
    import torch
    import webdataset as wds

    preprocess = open_clip.image_transform(224, is_train=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    pipeline = (
        wds.WebDataset(shards, shardshuffle=False, empty_check=False)
        .shuffle(1000)
        .decode("pilrgb")
        .to_tuple("jpg;png", "txt")
        .map_tuple(preprocess, lambda text: tokenizer(text)[0])
        .batched(batch_size)
    )
    loader = torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=1, persistent_workers=True)
    return (images for images, _ in loader)


def run_one(side: str, shards: str, num_images: int, batch_size: int, warmup: int, batches: int) -> dict:
    import resource

    import torch

    torch.set_num_threads(1)
    if side == "webdataset+openclip":
        stream = _openclip_loader(shards, batch_size)
    else:
        stream = _clipctl_loader(shards, num_images, batch_size, fast=side == "clipctl")
    for _ in range(warmup):
        next(stream)
    main0, workers0, start = resource.getrusage(resource.RUSAGE_SELF), _children_cpu(), time.perf_counter()
    shape = None
    for _ in range(batches):
        images = next(stream)
        shape = (tuple(images.shape), str(images.dtype))
    wall = time.perf_counter() - start
    main1, workers1 = resource.getrusage(resource.RUSAGE_SELF), _children_cpu()
    n = batches * batch_size
    main_cpu = (main1.ru_utime - main0.ru_utime) + (main1.ru_stime - main0.ru_stime)
    return {
        "images_per_s": n / wall,
        "images_per_worker_cpu_s": n / max(workers1 - workers0, 1e-9),
        "main_cpu_ms_per_image": 1e3 * main_cpu / n,
        "batch": shape,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup-batches", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--work-dir", default="/tmp/clipctl-bench-loader")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one side, print JSON
    args = parser.parse_args()
    _, shards = make_data(Path(args.work_dir) / f"data-{args.num_images}-256", args.num_images, 256)
    if args.one:
        result = run_one(
            args.one, shards, args.num_images, args.batch_size, args.warmup_batches, args.batches
        )
        print(json.dumps(result))
        return
    print(f"CPU: {cpu_description()}; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    runs: dict[str, list[dict]] = {side: [] for side in args.sides}
    for repeat in range(args.repeats):
        order = args.sides if repeat % 2 == 0 else list(reversed(args.sides))
        for side in order:
            cmd = [sys.executable, __file__, "--one", side, *sys.argv[1:]]
            out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                print(f"  {side} #{repeat}: FAILED\n{out.stderr[-2000:]}", flush=True)
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["load"] = os.getloadavg()[0]
            runs[side].append(result)
            print(f"  {side} #{repeat}: {json.dumps(result)}", flush=True)
    _report(runs, args)


def _report(runs: dict[str, list[dict]], args: argparse.Namespace) -> None:
    print(f"256 px JPEG shards, ViT-B-32 training transform, batch {args.batch_size}, 1 worker (medians):")
    med = {}
    for side, results in runs.items():
        if not results:
            continue
        med[side] = {
            k: statistics.median(r[k] for r in results) for k in results[0] if k not in ("batch", "load")
        }
        m = med[side]
        print(
            f"  {side:>20}: {m['images_per_s']:7.1f} images/s, {m['images_per_worker_cpu_s']:7.1f} images per "
            f"worker CPU-second, main {m['main_cpu_ms_per_image']:.2f} ms CPU/image, batch {results[0]['batch']}"
        )
    for base in ("clipctl-float-pil", "webdataset+openclip"):
        if "clipctl" in med and base in med:
            a, b = med["clipctl"], med[base]
            print(
                f"  clipctl / {base}: {a['images_per_worker_cpu_s'] / b['images_per_worker_cpu_s']:.2f}x per "
                f"loader core, {a['images_per_s'] / b['images_per_s']:.2f}x images/s"
            )
    print(f"  load average now: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
