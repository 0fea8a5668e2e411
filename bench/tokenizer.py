"""CLIP BPE tokenizer throughput: clipctl vs OpenCLIP on the same captions, in one run.

    PYTHONPATH=. .venv/bin/python bench/tokenizer.py --captions 20000 --batch-size 256 --rounds 5

Captions are generated (seeded): web-caption-like word mixes with numbers, punctuation, HTML entities, accents,
CJK and emoji, so the text cleaning (ftfy, html unescape, whitespace) and the BPE both get work. Every round
tokenizes a fresh slice of captions with both tokenizers, alternating which goes first, so word caches and
machine noise treat both alike; the first round only warms up. Ids are compared on every batch. Prints the CPU,
whether it has native bfloat16 (irrelevant here: tokenizing is pure Python, one thread), the load average, the
median captions/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

WORDS = (
    "a photo of the cat dog sitting on red blue green old new small large wooden table beach sunset city street "
    "portrait landscape vintage poster logo illustration vector art watercolor painting close-up macro shot in "
    "with and for from at by near under over running jumping blurry bokeh studio product white background"
).split()
EXTRAS = [
    "2019",
    "4k",
    "HD",
    "&amp;",
    "&quot;",
    "café",
    "naïve",
    "東京",
    "北京",
    "🙂",
    "🚀",
    "I'm",
    "it's",
    "#tbt",
    "(1/3)",
]


def make_captions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    captions = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 30))]
        for _ in range(rng.randint(0, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(EXTRAS))
        caption = " ".join(words)
        captions.append(caption.capitalize() + rng.choice(["", ".", "!", " ...", "  "]))
    return captions


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--captions", type=int, default=20000, help="captions per round")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (plus one warm-up)")
    args = parser.parse_args()

    import open_clip
    import torch

    import clipctl
    from clipctl.runtime.cpu import describe_cpu

    torch.set_num_threads(1)
    tokenizers = {
        "clipctl": clipctl.get_tokenizer(args.model),
        "open_clip": open_clip.get_tokenizer(args.model),
    }
    print(f"cpu: {describe_cpu()}; load average before: {load_average()}")
    print(f"torch {torch.__version__}, open_clip {open_clip.__version__}, {args.captions} captions per round")
    rates: dict[str, list[float]] = {name: [] for name in tokenizers}
    for round_index in range(args.rounds + 1):
        captions = make_captions(args.captions, seed=round_index)
        batches = [captions[i : i + args.batch_size] for i in range(0, len(captions), args.batch_size)]
        order = list(tokenizers) if round_index % 2 == 0 else list(reversed(tokenizers))
        outputs = {}
        for name in order:
            start = time.perf_counter()
            outputs[name] = [tokenizers[name](batch) for batch in batches]
            elapsed = time.perf_counter() - start
            if round_index:  # round 0 warms caches and imports
                rates[name].append(len(captions) / elapsed)
        same = all(torch.equal(a, b) for a, b in zip(outputs["clipctl"], outputs["open_clip"], strict=True))
        if not same:
            raise SystemExit(f"round {round_index}: the two tokenizers gave different ids")
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, median in medians.items():
        print(
            f"{name:10s} median {median:9.0f} captions/s  rounds: {', '.join(f'{r:.0f}' for r in rates[name])}"
        )
    print(f"ratio clipctl / open_clip: {medians['clipctl'] / medians['open_clip']:.2f}x (ids identical)")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
