"""Multi-positive loss on real handwritten digits: zero-shot top-1 on held-out digits after the same training
without the flag, with ``--multi-positive`` (identical captions are positives) and with ``--multi-positive
--csv-label-key label`` (equal labels are positives).

The data is scikit-learn's digits (1,797 8x8 images, shipped inside scikit-learn, nothing downloaded), split
1,437 / 360 by ``train_test_split(test_size=0.2, random_state=0)``, upscaled to 64 px PNGs. Each training image
gets one of five caption phrasings of its class ("a photo of the digit 3", "handwritten 3", ...), so a batch of
64 holds many pairs of one class under different captions. The held-out digits are an ImageFolder, scored by
``clipctl zeroshot`` with the five phrasings as templates. The three runs are the same command (model
tiny-ViT-8-64, batch 64, 15 epochs, fp32) but for the flags, each a fresh ``clipctl train`` process.

15 epochs are 330 steps. At ``--lr 1e-3 --warmup 30`` the standard loss already learns the digits; at clipctl's
(and OpenCLIP's) defaults, ``--lr 5e-4 --warmup 10000``, the run never leaves warm-up (the learning rate peaks
at 1.7e-5), which is the regime where the issue measured the standard loss. Identical captions alone give the
softmax loss the same value and gradients as the standard loss (identical captions have identical text
features, so spreading a row's target over them changes nothing); only labels that join different captions
change it.

    PYTHONPATH=. .venv/bin/python bench/multi_positive.py                             # working learning rate
    PYTHONPATH=. .venv/bin/python bench/multi_positive.py --lr 5e-4 --warmup 10000    # the defaults
    PYTHONPATH=. .venv/bin/python bench/multi_positive.py --epochs 3                  # a quicker look

Needs scikit-learn (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHRASINGS = (
    "a photo of the digit {c}",
    "handwritten {c}",
    "the number {c}",
    "a drawing of a {c}",
    "a scanned digit {c}",
)
VARIANTS = {
    "no flag": [],
    "--multi-positive": ["--multi-positive"],
    "--multi-positive --csv-label-key label": ["--multi-positive", "--csv-label-key", "label"],
}
SPLIT_SEED = 0


def write_digits(out: Path, *, image_size: int = 64, seed: int = 0, train_limit: int | None = None) -> dict:
    """Write ``train.csv`` (filepath, title, label) + PNGs, ``heldout/<digit>/*.png``, ``classnames.txt`` and
    ``templates.txt`` under ``out``; return their paths."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = (digits.images * (255.0 / 16.0)).astype(np.uint8)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, digits.target, test_size=0.2, random_state=SPLIT_SEED
    )
    if train_limit is not None:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    rng = np.random.default_rng(seed)

    def save(array, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(array, "L").resize((image_size, image_size), Image.Resampling.BICUBIC)
        image.convert("RGB").save(path)

    rows = ["filepath,title,label"]
    for i, (array, label) in enumerate(zip(train_x, train_y, strict=True)):
        save(array, out / "train" / f"{i:04d}.png")
        caption = PHRASINGS[int(rng.integers(len(PHRASINGS)))].format(c=int(label))
        rows.append(f"train/{i:04d}.png,{caption},{int(label)}")
    (out / "train.csv").write_text("\n".join(rows) + "\n")
    for i, (array, label) in enumerate(zip(test_x, test_y, strict=True)):
        save(array, out / "heldout" / str(int(label)) / f"{i:04d}.png")
    (out / "classnames.txt").write_text("".join(f"{d}\n" for d in range(10)))
    (out / "templates.txt").write_text("".join(f"{p}\n" for p in PHRASINGS))
    return {
        "csv": out / "train.csv",
        "heldout": out / "heldout",
        "classnames": out / "classnames.txt",
        "templates": out / "templates.txt",
        "num_train": len(train_y),
        "num_heldout": len(test_y),
    }


def train_command(data: dict, logs: Path, name: str, flags: list[str], args: argparse.Namespace) -> list[str]:
    return [
        "clipctl", "train", "--model", args.model, "--train-data", str(data["csv"]), "--csv-separator", ",",
        "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--lr", str(args.lr),
        "--warmup", str(args.warmup), "--wd", "0.1", "--precision", "fp32", "--workers", "1",
        "--seed", str(args.seed), "--save-frequency", str(args.epochs), "--log-every-n-steps", "50",
        "--logs", str(logs), "--name", name, *flags,
    ]  # fmt: skip


def zeroshot_command(data: dict, model: str, checkpoint: Path, out: Path) -> list[str]:
    return [
        "clipctl", "zeroshot", "--model", model, "--pretrained", str(checkpoint), "--data", str(data["heldout"]),
        "--classnames", str(data["classnames"]), "--templates", str(data["templates"]), "--out", str(out),
        "--workers", "1", "--quiet",
    ]  # fmt: skip


def run_clipctl(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "clipctl", *command[1:]], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {shlex.join(command)}\n{done.stderr[-2000:]}")


def top1(result_file: Path) -> float:
    return float(json.loads(result_file.read_text())["metrics"]["top1"])


def train_and_score(data: dict, work: Path, name: str, flags: list[str], args: argparse.Namespace) -> dict:
    """Train one variant in a fresh process, score it on the held-out digits; the commands and the top-1."""
    logs = work / "runs"
    train = train_command(data, logs, name, flags, args)
    started = time.perf_counter()
    run_clipctl(train)
    seconds = time.perf_counter() - started
    result = work / f"{name}.json"
    zeroshot = zeroshot_command(
        data, args.model, logs / name / "checkpoints" / f"epoch_{args.epochs}.pt", result
    )
    run_clipctl(zeroshot)
    return {"top1": top1(result), "train_seconds": seconds, "commands": [train, zeroshot]}


def _cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line), "?")
    bf16 = "avx512_bf16" in info or "amx_bf16" in info
    return f"{model}, {os.cpu_count()} cores, native bf16: {'yes' if bf16 else 'no'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-ViT-8-64")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work", type=Path, default=None, help="Keep data and runs here (default: a temp dir)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clipctl-digits-") as tmp:
        work = args.work or Path(tmp)
        data = write_digits(work / "digits")
        print(f"CPU: {_cpu()}; load average before: {os.getloadavg()[0]:.2f}")
        print(f"digits: {data['num_train']} training images, {data['num_heldout']} held out")
        print(f"--lr {args.lr} --warmup {args.warmup}, {args.epochs} epochs, batch {args.batch_size}")
        for i, (label, flags) in enumerate(VARIANTS.items()):
            result = train_and_score(data, work, f"digits_{i}", flags, args)
            print(
                f"\n{label}: zero-shot top-1 {result['top1']:.3f} (training {result['train_seconds']:.0f} s)"
            )
            for command in result["commands"]:
                print("  " + shlex.join(command))
            print(f"load average: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
