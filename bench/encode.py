"""Image and text encoding throughput: clipctl vs OpenCLIP on the same weights, batch and precision.

    .venv/bin/python bench/encode.py --model ViT-B-32 --batch-size 32 --text-batch-size 64 --rounds 5

Both models get OpenCLIP's random-initialised weights (saved once, loaded strictly by clipctl). Rounds alternate
between the two libraries so that machine noise hits both alike; the best round of each and the ratio of the
median rounds are reported, and the outputs are compared so that the speed is not bought with different numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _rate(fn, n_items: int, rounds: int) -> list[float]:
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        rates.append(n_items / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--text-batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import open_clip

    import clipctl
    from clipctl.runtime.cpu import describe_cpu

    torch.manual_seed(0)
    reference = open_clip.create_model(args.model, pretrained=None).eval()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.save(reference.state_dict(), weights)
        ours = clipctl.create_model(args.model, pretrained=str(weights)).eval()

    size = reference.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    images = torch.randn(args.batch_size, 3, *size)
    texts = torch.randint(1, 49406, (args.text_batch_size, reference.context_length))
    texts[:, 0], texts[:, -1] = 49406, 49407

    with torch.inference_mode():
        for model in (reference, ours):  # warm-up
            model.encode_image(images[:2])
            model.encode_text(texts[:2])
        img_diff = (reference.encode_image(images) - ours.encode_image(images)).abs().max().item()
        txt_diff = (reference.encode_text(texts) - ours.encode_text(texts)).abs().max().item()
        results = {
            ("openclip", "image"): [],
            ("clipctl", "image"): [],
            ("openclip", "text"): [],
            ("clipctl", "text"): [],
        }
        for _ in range(args.rounds):
            for name, model in (("openclip", reference), ("clipctl", ours)):
                results[(name, "image")] += _rate(lambda m=model: m.encode_image(images), args.batch_size, 1)
                results[(name, "text")] += _rate(
                    lambda m=model: m.encode_text(texts), args.text_batch_size, 1
                )

    print(
        f"{args.model}, float32, {args.threads} threads, image batch {args.batch_size}, "
        f"text batch {args.text_batch_size}, {args.rounds} alternating rounds"
    )
    print(f"cpu: {describe_cpu()}; load average {os.getloadavg()[0]:.2f}")
    print(f"max |diff| image {img_diff:.2e}, text {txt_diff:.2e}")
    print(f"{'items/s':8} {'openclip best':>14} {'clipctl best':>13} {'ratio':>7} {'ratio of medians':>17}")
    for kind in ("image", "text"):
        ref, new = results[("openclip", kind)], results[("clipctl", kind)]
        print(
            f"{kind:8} {max(ref):14.2f} {max(new):13.2f} {max(new) / max(ref):7.3f} "
            f"{statistics.median(new) / statistics.median(ref):17.3f}"
        )


if __name__ == "__main__":
    main()
