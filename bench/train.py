"""Whole-process training speed: ``clipctl train`` against ``python -m open_clip_train.main``, same data, flags.

Both sides run as fresh processes with the same command-line flags (model, CSV of generated 256 px JPEGs or
img2dataset-layout shards, batch size, precision, loader workers, one epoch, one checkpoint, a log line per
step), alternating which goes first, ``--repeats`` times. Each line a side prints for a step is timestamped as
it arrives; samples/s after warm-up is measured from the end of step ``--warmup-steps`` to the last step.
Reported per side (medians over repeats): that rate, wall time, CPU time of the process tree (main + loader
workers) and the peak proportional set size (PSS, so pages shared by forked workers count once) of the tree.

    python bench/train.py --models ViT-B-32 RN50 --batch-size 16 --num-images 192 --repeats 2
    python bench/train.py --models convnext_base_w --batch-size 8 --num-images 64 --repeats 2
    python bench/train.py --models ViT-B-32 --data shards        # OpenCLIP 3.3 fails here, see below
    python bench/train.py --models ViT-B-32 --clipctl-only --variant=--torchcompile

Neither side sets OMP_NUM_THREADS (it is removed from the environment): each picks its own threads. OpenCLIP 3.3
with webdataset 0.2.x raises ``KeyError: 'fname'`` on shards that webdataset itself reads; the script reports
such a failure and goes on. ``--variant FLAG`` adds a third side: clipctl with extra flags (``--torchcompile``).
Needs ``open_clip_torch`` (with ``open_clip_train``) for the OpenCLIP side.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP_LINE = {
    "clipctl": re.compile(r"epoch \d+ step (\d+)/\d+ "),
    "openclip": re.compile(r"Train Epoch: \d+ \[\s*(\d+)/"),
}


def cpu_description() -> str:
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "unknown CPU", "x86_64"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    bf16 = sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile"))
    return f"{model}; {os.cpu_count()} CPUs; native bf16: {', '.join(bf16) if bf16 else 'no'}"


def make_data(folder: Path, num_images: int, image_size: int) -> tuple[str, str]:
    """Generated coloured-shape JPEGs as img2dataset-layout shards and as a CSV of the same files."""
    shards = folder / "shards"
    if not (shards / "sizes.json").exists():
        subprocess.run(
            [sys.executable, "-m", "clipctl", "data", "synth", "--out", str(shards), "--num-train",
             str(num_images), "--num-heldout-per-class", "1", "--image-size", str(image_size),
             "--samples-per-shard", str(max(1, num_images // 4)), "--overwrite"],
            check=True, capture_output=True, env=_env(),
        )  # fmt: skip
    images, table = folder / "images", folder / "train.csv"
    if not table.exists():
        images.mkdir(parents=True, exist_ok=True)
        rows = []
        for tar_path in sorted(shards.glob("*.tar")):
            with tarfile.open(tar_path) as tar:
                members = {m.name: m for m in tar.getmembers()}
                for name in sorted(n for n in members if n.endswith(".jpg")):
                    target = images / Path(name).name
                    target.write_bytes(tar.extractfile(members[name]).read())
                    caption = tar.extractfile(members[name[:-4] + ".txt"]).read().decode()
                    rows.append((str(target), caption))
        with open(table, "w", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t")
            writer.writerow(["filepath", "title"])
            writer.writerows(rows)
    n = len(list(shards.glob("*.tar")))
    return str(table), str(shards / f"{{00000..{n - 1:05d}}}.tar")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        pids += [int(c) for c in children]
        frontier += [int(c) for c in children]
    return pids


def _pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_side(cmd: list[str], side: str, warmup_steps: int, batch_size: int, log: Path) -> dict:
    """Run one training process; return its rate after warm-up, wall and CPU seconds, peak tree PSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], sum(_pss_bytes(p) for p in _tree(proc.pid)))
            time.sleep(1.0)  # smaps_rollup walks every mapping: sampling often would cost CPU

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stamps: dict[int, float] = {}
    with open(log, "w") as out:
        for line in proc.stdout:
            out.write(line)
            out.flush()
            match = STEP_LINE[side].search(line)
            if match:
                step = int(match.group(1)) // (batch_size if side == "openclip" else 1)
                stamps.setdefault(step, time.perf_counter())
    rc = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = {"rc": rc, "wall_s": wall, "cpu_s": cpu, "peak_pss_mb": peak[0] / 2**20, "log": str(log)}
    last = max(stamps, default=0)
    if rc == 0 and warmup_steps in stamps and last > warmup_steps:
        result["samples_per_s"] = (last - warmup_steps) * batch_size / (stamps[last] - stamps[warmup_steps])
    return result


def commands(args: argparse.Namespace, model: str, data: str, kind: str, out: Path, tag: str) -> dict:
    common = [
        "--model", model, "--train-data", data, "--dataset-type", kind, "--batch-size", str(args.batch_size),
        "--precision", args.precision, "--workers", str(args.workers), "--epochs", "1", "--lr", "1e-4",
        "--warmup", "2", "--wd", "0.1", "--seed", "0", "--save-frequency", "1", "--log-every-n-steps", "1",
        "--zeroshot-frequency", "0", "--report-to", "", "--logs", str(out),
    ]  # fmt: skip
    if kind == "csv":
        common += ["--csv-img-key", "filepath", "--csv-caption-key", "title"]
    else:
        common += ["--train-num-samples", str(args.num_images)]
    sides = {"clipctl": [sys.executable, "-m", "clipctl", "train", *common, "--name", f"clipctl-{tag}"]}
    if not args.clipctl_only:
        sides["openclip"] = [
            sys.executable,
            "-m",
            "open_clip_train.main",
            *common,
            "--name",
            f"openclip-{tag}",
        ]
    if args.variant:
        sides["clipctl " + " ".join(args.variant)] = [*sides["clipctl"][:-1], f"variant-{tag}", *args.variant]
    return sides


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    summary = {}
    for side, results in runs.items():
        ok = [r for r in results if r["rc"] == 0]
        if not ok:
            summary[side] = {"failed": True, "log": results[-1]["log"]}
            continue
        summary[side] = {
            key: statistics.median(r[key] for r in ok if key in r)
            for key in ("samples_per_s", "wall_s", "cpu_s", "peak_pss_mb")
            if any(key in r for r in ok)
        }
        summary[side]["runs"] = len(ok)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ViT-B-32", "RN50", "convnext_base_w"])
    parser.add_argument("--data", choices=["csv", "shards", "both"], default="csv")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-images", type=int, default=192)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--clipctl-only", action="store_true", help="no OpenCLIP side (with --variant)")
    parser.add_argument("--variant", nargs="+", default=None, help="extra flags for a third, clipctl side")
    parser.add_argument("--work-dir", default=None, help="keep data and logs here (default: a temp folder)")
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-train-"))
    print(f"CPU: {cpu_description()}; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    table, shards = make_data(
        work / f"data-{args.num_images}-{args.image_size}", args.num_images, args.image_size
    )
    kinds = {"csv": [("csv", table)], "shards": [("webdataset", shards)]}
    kinds["both"] = kinds["csv"] + kinds["shards"]
    report = {"cpu": cpu_description(), "args": vars(args), "results": []}
    for model in args.models:
        for kind, data in kinds[args.data]:
            runs: dict[str, list[dict]] = {}
            for repeat in range(args.repeats):
                sides = commands(args, model, data, kind, work / "logs", f"{model}-{kind}-{repeat}")
                order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
                for side in order:
                    parser_key = "openclip" if side == "openclip" else "clipctl"
                    log = work / f"{model}-{kind}-{repeat}-{side.replace(' ', '_')}.log"
                    result = run_side(sides[side], parser_key, args.warmup_steps, args.batch_size, log)
                    result["load_after"] = os.getloadavg()[0]
                    runs.setdefault(side, []).append(result)
                    print(f"  {model} {kind} #{repeat} {side}: {json.dumps(result)}", flush=True)
                shutil.rmtree(work / "logs", ignore_errors=True)
            _print_summary(model, kind, summarize(runs), args)
            report["results"].append({"model": model, "data": kind, "summary": summarize(runs), "runs": runs})
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def _print_summary(model: str, kind: str, summary: dict[str, dict], args: argparse.Namespace) -> None:
    print(f"{model}, {kind}, batch {args.batch_size}, {args.precision}, {args.workers} worker(s):")
    for side, s in summary.items():
        if s.get("failed"):
            print(f"  {side:>24}: FAILED (see {s['log']})")
            continue
        print(
            f"  {side:>24}: {s.get('samples_per_s', float('nan')):6.2f} samples/s after warm-up, wall "
            f"{s['wall_s']:6.1f} s, CPU {s['cpu_s']:6.1f} s, peak PSS {s['peak_pss_mb']:6.0f} MB ({s['runs']} runs)"
        )
    base = summary.get("openclip")
    if base and not base.get("failed") and "samples_per_s" in base:
        for side, s in summary.items():
            if side != "openclip" and not s.get("failed") and "samples_per_s" in s:
                print(
                    f"  {side} / openclip: samples/s {s['samples_per_s'] / base['samples_per_s']:.2f}x, wall "
                    f"{s['wall_s'] / base['wall_s']:.2f}x, CPU {s['cpu_s'] / base['cpu_s']:.2f}x, "
                    f"peak PSS {s['peak_pss_mb'] / base['peak_pss_mb']:.2f}x"
                )
    print(f"  load average now: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
