"""UniRepLKNet inference throughput: training form vs re-parameterised (deploy) form, same weights, same run.

    PYTHONPATH=. .venv/bin/python bench/unireplknet.py --variants unireplknet_a unireplknet_s --size 224 --batch-size 8

OpenCLIP has no UniRepLKNet, so the baseline is the training-form network itself (what a checkpoint loaded
without re-parameterisation runs). Weights are random but with real BatchNorm statistics; rounds alternate
between the two forms so that machine noise hits both alike; the best round of each is reported, and the
outputs are compared so that the speed is not bought with different numbers.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import timm
import torch
from torch import nn

from clipctl.models.unireplknet import UniRepLKNetBlock, reparameterize_model


@torch.no_grad()
def _randomize_bn(model: nn.Module) -> None:
    """Real-looking BN statistics and layer scales: with the init (layer scale 1e-6) the blocks barely change
    the output, and the train/deploy comparison below would say nothing."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0, 0.1)
        elif isinstance(module, UniRepLKNetBlock) and module.gamma is not None:
            module.gamma.uniform_(0.1, 0.3)


def _rate(model: nn.Module, images: torch.Tensor) -> float:
    start = time.perf_counter()
    model(images)
    return images.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=["unireplknet_a", "unireplknet_s"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch_size, 3, args.size, args.size)

    from clipctl.runtime.cpu import describe_cpu

    print(f"cpu: {describe_cpu()}; load average {os.getloadavg()[0]:.2f}")
    print(
        f"CPU, float32, {args.threads} threads, batch {args.batch_size}, {args.size}x{args.size}, "
        f"best of {args.rounds} rounds"
    )
    print(f"{'variant':<16}{'train img/s':>12}{'reparam img/s':>15}{'speed-up':>10}{'max rel diff':>14}")
    with torch.inference_mode():
        for variant in args.variants:
            train = timm.create_model(variant, num_classes=0).eval()
            _randomize_bn(train)
            deploy = reparameterize_model(copy.deepcopy(train))
            for model in (train, deploy):  # warm-up
                model(images[:2])
            a, b = train(images), deploy(images)
            rel = ((a - b).abs().max() / a.abs().max()).item()
            rates: dict[str, list[float]] = {"train": [], "deploy": []}
            for _ in range(args.rounds):
                rates["train"].append(_rate(train, images))
                rates["deploy"].append(_rate(deploy, images))
            best_train, best_deploy = max(rates["train"]), max(rates["deploy"])
            print(
                f"{variant:<16}{best_train:>12.1f}{best_deploy:>15.1f}{best_deploy / best_train:>9.2f}x{rel:>14.1e}"
            )


if __name__ == "__main__":
    main()
