"""Per-rank memory and step time of clipctl's training step under FSDP (``--fsdp``) and DDP, two ranks on CPU.

    python bench/fsdp.py                                        # ViT-B-32 and ViT-L-14, batch 4 per rank
    python bench/fsdp.py --models ViT-H-14 --strategies fsdp --grad-checkpointing --steps 2 --batch-size 2

Each (model, strategy) runs in a fresh ``torchrun --nproc_per_node 2`` job: random weights, fp32, AdamW, the
full-matrix contrastive loss with gathered gradients, on synthetic batches (no data loading). Per rank it
reports the peak resident memory during the steps above the process's resident memory before the model was
built (glibc told to return freed blocks at once, so this follows the live tensors), the time of each step
(the first includes FSDP's lazy set-up and the optimizer's state allocation), and the memory plan's total for
the same run (``clipctl models show --plan``). A strategy whose plan does not fit the host's available memory
twice over (two ranks) is skipped and said so, rather than swapping the machine to death.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def available_bytes() -> int:
    with open("/proc/meminfo", encoding="ascii") as info:
        for line in info:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def worker(args: argparse.Namespace) -> None:
    import torch

    from clipctl.api import create_model
    from clipctl.config.run import resolve_run_config
    from clipctl.runtime import plan_precision
    from clipctl.train.distributed import barrier, cleanup, init_distributed
    from clipctl.train.fsdp import prepare_for_sharding, shard_model
    from clipctl.train.losses import build_loss
    from clipctl.train.memory_plan import HostMemoryProbe
    from clipctl.train.optim import build_optimizer
    from clipctl.train.step import train_step

    torch.set_num_threads(args.threads)
    env = init_distributed(device="cpu", timeout=3600)
    before_model = HostMemoryProbe().baseline
    cfg = resolve_run_config(None, {"model": args.models, "precision": "fp32", "gather_with_grad": True}, [])
    torch.manual_seed(0)
    model = create_model(args.models, output_dict=True)
    model.set_grad_checkpointing(args.grad_checkpointing)
    plan = plan_precision("fp32", env.device, training=True)
    if args.strategies == "fsdp":
        prepare_for_sharding(model)
        shard_model(model, device=env.device, world_size=env.world_size, plan=plan)
    else:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = build_optimizer(cfg, model)
    loss_fn = build_loss(cfg, model)
    inner = getattr(model, "module", model)
    height, width = inner.visual.image_size
    probe = HostMemoryProbe()  # the steps' peak, not the set-up's (building the whole model before sharding)
    step_seconds = []
    for step in range(args.steps):
        generator = torch.Generator().manual_seed(step * 10 + env.rank)
        images = torch.randn(args.batch_size, 3, height, width, generator=generator)
        texts = torch.randint(1, 49406, (args.batch_size, inner.context_length), generator=generator)
        barrier(env)
        start = time.perf_counter()
        train_step(model, [(images, texts)], loss_fn, optimizer, plan=plan, device=env.device)
        barrier(env)
        step_seconds.append(time.perf_counter() - start)
    result = {
        "rank": env.rank,
        "peak_bytes": probe.peak_bytes() + probe.baseline - before_model,
        "step_seconds": step_seconds,
    }
    Path(args.out, f"rank{env.rank}.json").write_text(json.dumps(result))
    cleanup(env)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_job(args: argparse.Namespace, model: str, strategy: str) -> list[dict]:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env["OMP_NUM_THREADS"] = str(args.threads)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "0")
    torchrun = Path(sys.executable).with_name("torchrun")
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
        cmd += ["--master_port", str(_free_port()), __file__, "--worker", "--out", out, "--models", model]
        cmd += ["--strategies", strategy, "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
        cmd += ["--threads", str(args.threads)] + (
            ["--grad-checkpointing"] if args.grad_checkpointing else []
        )
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{model} {strategy} failed:\n{done.stderr[-3000:]}")
        return [json.loads(Path(out, f"rank{r}.json").read_text()) for r in (0, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ViT-B-32,ViT-L-14")
    parser.add_argument("--strategies", default="ddp,fsdp")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from clipctl.runtime import describe_cpu
    from clipctl.train.memory_plan import GIB, measure_footprint, plan_memory

    print(describe_cpu())
    print(
        f"load average before: {os.getloadavg()[0]:.2f}, memory available {available_bytes() / GIB:.1f} GiB"
    )
    print(
        f"2 ranks, batch {args.batch_size} per rank, fp32, {args.steps} steps, {args.threads} thread(s) per rank"
        + (", grad checkpointing" if args.grad_checkpointing else "")
    )
    print(
        f"{'model':12}{'strategy':10}{'rank 0 peak':>14}{'rank 1 peak':>14}{'plan':>12}{'step times (s)':>24}"
    )
    for model in args.models.split(","):
        footprint = measure_footprint(model, precision="fp32")
        plan = plan_memory(
            footprint, batch_size=args.batch_size, world_size=2, grad_checkpointing=args.grad_checkpointing
        )
        results = {}
        for strategy in args.strategies.split(","):
            planned = plan.total(strategy.upper())
            if 2 * planned > 0.9 * available_bytes():
                print(
                    f"{model:12}{strategy:10}skipped: the plan needs {planned / GIB:.1f} GiB per rank, "
                    f"{available_bytes() / GIB:.1f} GiB available for two ranks"
                )
                continue
            ranks = run_job(args, model, strategy)
            results[strategy] = ranks
            peaks = "".join(f"{r['peak_bytes'] / GIB:11.2f} GiB" for r in ranks)
            times = ", ".join(f"{t:.2f}" for t in ranks[0]["step_seconds"])
            print(f"{model:12}{strategy:10}{peaks}{planned / GIB:8.2f} GiB{times:>24}")
        if {"ddp", "fsdp"} <= set(results):
            peak = {k: max(r["peak_bytes"] for r in v) for k, v in results.items()}
            step = {
                k: min(min(r["step_seconds"][1:] or r["step_seconds"]) for r in v) for k, v in results.items()
            }
            print(
                f"{model:12}fsdp/ddp: peak memory {peak['fsdp'] / peak['ddp']:.3f}x, "
                f"step time {step['fsdp'] / step['ddp']:.3f}x"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
