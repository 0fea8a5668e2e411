"""Training-step speed and memory: clipctl's ``train_step`` against OpenCLIP's ``train_one_epoch``.

Both sides train the same architecture (one model-config JSON, same weights seed) on the same pre-made batches
(no data loading, so only the step is measured: forward, loss, backward, clip, AdamW, schedule) with AdamW and
OpenCLIP's parameter groups. Each side runs in its own fresh process, alternating, ``--repeats`` times; the
best run of each side is reported.

    python bench/train_step.py                      # CPU, tiny config
    python bench/train_step.py --device cuda --size small --batch-size 128 --precision amp

Memory: peak resident memory of the process during the timed steps above its level just before them (CPU,
with glibc told to return freed blocks at once, so this is the peak of live activations and gradients), or
``torch.cuda.max_memory_allocated`` above the level before the steps (CUDA). Needs ``open_clip_torch`` (with ``open_clip_train``) installed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONFIGS = {
    "tiny": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "small": {
        "embed_dim": 256,
        "vision_cfg": {"image_size": 128, "layers": 6, "width": 256, "head_width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 6},
    },
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples the resident set every millisecond while the steps run (ru_maxrss would include set-up)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __enter__(self) -> PeakRss:
        self.base = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def make_batches(args: argparse.Namespace, cfg: dict) -> list:
    import torch

    g = torch.Generator().manual_seed(0)
    size, ctx = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"]
    batches = []
    for _ in range(args.steps + args.warmup_steps):
        images = torch.randn(args.batch_size, 3, size, size, generator=g)
        texts = torch.randint(1, 49406, (args.batch_size, ctx), generator=g)
        texts[:, -1] = 49407
        batches.append((images, texts))
    return batches


def run_clipctl(args: argparse.Namespace, cfg_path: str, batches: list, device) -> tuple[float, int]:
    import torch

    from clipctl.api import create_model
    from clipctl.config.run import resolve_run_config
    from clipctl.runtime import plan_precision
    from clipctl.train.losses import build_loss
    from clipctl.train.optim import build_optimizer, build_schedule
    from clipctl.train.step import train_step

    run_cfg = resolve_run_config(
        None,
        {
            "model": cfg_path,
            "lr": 5e-4,
            "wd": 0.2,
            "precision": args.precision,
            "grad_clip_norm": 1.0,
            "warmup": 2,
            "epochs": 1,
            "batch_size": args.batch_size,
        },
        [],
    )
    torch.manual_seed(0)
    plan = plan_precision(args.precision, device, training=True)
    model = create_model(cfg_path, precision=plan.model_precision, device=device, output_dict=True)
    loss_fn = build_loss(run_cfg, model)
    optimizer = build_optimizer(run_cfg, model)
    schedule = build_schedule(run_cfg, len(batches))
    scaler = torch.amp.GradScaler(device.type) if plan.use_grad_scaler else None

    def step(i: int, batch) -> None:
        schedule.apply(optimizer, i)
        train_step(
            model, [batch], loss_fn, optimizer, plan=plan, device=device, scaler=scaler, grad_clip_norm=1.0
        )

    return _timed(args, batches, step, device)


def run_openclip(args: argparse.Namespace, cfg_path: str, batches: list, device) -> tuple[float, int]:
    import open_clip
    import torch
    from open_clip_train.params import parse_args
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    open_clip.add_model_config(cfg_path)
    name = Path(cfg_path).stem
    oc_args = parse_args(
        [
            "--model",
            name,
            "--lr",
            "5e-4",
            "--wd",
            "0.2",
            "--precision",
            args.precision,
            "--grad-clip-norm",
            "1.0",
            "--warmup",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            str(args.batch_size),
            "--log-every-n-steps",
            "1000000",
        ]
    )
    oc_args.device = str(device)
    oc_args.distributed, oc_args.world_size, oc_args.rank, oc_args.local_rank = False, 1, 0, 0
    oc_args.distill = None
    oc_args.wandb = oc_args.save_logs = False
    oc_args.tensorboard = False
    torch.manual_seed(0)
    model = open_clip.create_model(name, precision=args.precision, device=device, output_dict=True)
    loss = open_clip.create_loss(oc_args)

    def exclude(n, p):  # OpenCLIP main.py's grouping
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.2},
        ],
        lr=5e-4,
        betas=(oc_args.beta1, oc_args.beta2),
        eps=oc_args.eps,
    )
    scaler = torch.amp.GradScaler(device.type) if args.precision == "amp" else None
    scheduler = cosine_lr(optimizer, 5e-4, 2, len(batches))

    class Loader(list):
        num_batches = 0
        num_samples = 0

    class Data:
        def __init__(self, items):
            self.dataloader = Loader(items)
            self.dataloader.num_batches = len(items)
            self.dataloader.num_samples = len(items) * args.batch_size

        def set_epoch(self, epoch):
            pass

    def run(items) -> None:
        train_one_epoch(model, {"train": Data(items)}, loss, 0, optimizer, scaler, scheduler, None, oc_args)

    # one epoch call over the timed batches; warm-up batches first, in their own call
    run(batches[: args.warmup_steps])
    _sync(device)
    return _timed_once(args, lambda: run(batches[args.warmup_steps :]), device)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(args: argparse.Namespace, batches: list, step, device) -> tuple[float, int]:
    for i in range(args.warmup_steps):
        step(i, batches[i])
    _sync(device)

    def rest() -> None:
        for i in range(args.warmup_steps, len(batches)):
            step(i, batches[i])

    return _timed_once(args, rest, device)


def _timed_once(args: argparse.Namespace, fn, device) -> tuple[float, int]:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        return elapsed, torch.cuda.max_memory_allocated(device) - base
    with PeakRss() as rss:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
    return elapsed, rss.peak - rss.base


def child(args: argparse.Namespace) -> None:
    import logging

    import torch

    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = CONFIGS[args.size]
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = str(Path(tmp) / f"bench-{args.size}.json")
        Path(cfg_path).write_text(json.dumps(cfg))
        batches = make_batches(args, cfg)
        runner = run_clipctl if args.side == "clipctl" else run_openclip
        elapsed, peak = runner(args, cfg_path, batches, device)
    result = {
        "side": args.side,
        "samples_per_s": args.steps * args.batch_size / elapsed,
        "ms_per_step": 1000 * elapsed / args.steps,
        "peak_bytes": peak,
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "amp", "amp_bf16"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--side", choices=("clipctl", "openclip"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args)
        return
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env["OMP_NUM_THREADS"] = str(args.threads)
    # glibc: serve big blocks with mmap and give freed memory back at once, so the resident set follows the
    # tensors alive at each moment instead of what the allocator kept cached (otherwise the numbers are noise)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "0")
    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        for side in ("openclip", "clipctl"):
            cmd = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                sys.exit(f"{side} run failed:\n{done.stderr[-3000:]}")
            result = json.loads(lines[-1][len("RESULT ") :])
            if side not in best or result["samples_per_s"] > best[side]["samples_per_s"]:
                best[side] = result
    mem = "peak CUDA memory" if args.device.startswith("cuda") else "peak RSS growth"
    print(
        f"config {args.size}, batch {args.batch_size}, {args.steps} timed steps, {args.precision} on {args.device}, "
        f"{args.threads} thread(s), best of {args.repeats}"
    )
    print(f"{'':10}{'samples/s':>12}{'ms/step':>10}{mem:>22}")
    for side in ("openclip", "clipctl"):
        r = best[side]
        print(
            f"{side:10}{r['samples_per_s']:12.1f}{r['ms_per_step']:10.1f}{r['peak_bytes'] / 2**20:19.1f} MiB"
        )
    c, o = best["clipctl"], best["openclip"]
    mem_ratio = c["peak_bytes"] / o["peak_bytes"] if o["peak_bytes"] > 0 else float("nan")
    print(
        f"ratio clipctl/openclip: speed {c['samples_per_s'] / o['samples_per_s']:.3f}x, memory {mem_ratio:.3f}x"
    )


if __name__ == "__main__":
    main()
