"""`clipctl wise-ft`: weight-space interpolation between a zero-shot and a fine-tuned model (Wortsman et al.
2022, "Robust fine-tuning of zero-shot models"): ``theta = (1 - alpha) * zeroshot + alpha * finetuned``.

With one alpha the mix is written. With several and a held-out set, each mix is evaluated zero-shot, one
results file is written per alpha, and the mix with the best held-out top-1 is written (the first listed on a
tie).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipctl.errors import ClipctlError
from clipctl.soup.heldout import HeldOutOptions

ALPHA_PLACEHOLDER = "{alpha}"


@dataclass
class WiseFtOptions:
    zeroshot: str
    finetuned: str
    out: str | os.PathLike
    alphas: str = "0.5"  # "0.5" or "0,0.25,0.5,0.75,1"
    model: str | None = None
    held_out: HeldOutOptions | None = None
    results: str | None = None  # one file per alpha: a path with {alpha}; default beside --out
    overwrite: bool = False
    weights_only: bool = True


@dataclass
class WiseFtSummary:
    out: Path
    alpha: float  # the one written
    alphas: list[float]
    top1: dict[float, float] = field(default_factory=dict)  # held-out top-1 per alpha (with --data)
    results: dict[float, Path] = field(default_factory=dict)


def parse_alphas(text: str) -> list[float]:
    """``0.5`` or ``0,0.25,0.5``: numbers in [0, 1], duplicates dropped, order kept."""
    alphas: list[float] = []
    for part in str(text).split(","):
        try:
            alpha = float(part)
        except ValueError:
            raise ClipctlError(
                f"--alpha {text!r}: give numbers between 0 and 1, e.g. 0.5 or 0,0.5,1"
            ) from None
        if not math.isfinite(alpha) or not 0 <= alpha <= 1:
            raise ClipctlError(f"--alpha {part.strip()} is out of range: alpha is between 0 and 1")
        if alpha not in alphas:
            alphas.append(alpha)
    return alphas


def results_paths(options: WiseFtOptions, alphas: list[float]) -> dict[float, Path]:
    """Where each alpha's held-out results go, each checked (not a folder; not replaced without --overwrite)."""
    from clipctl.soup.soup_job import check_results_path

    template = options.results
    if template is None:
        out = Path(options.out).expanduser()
        stem = out.with_suffix("") if out.suffix else out
        template = f"{stem}.alpha{ALPHA_PLACEHOLDER}.json"
    elif ALPHA_PLACEHOLDER not in template and len(alphas) > 1:
        raise ClipctlError(f"--results needs {ALPHA_PLACEHOLDER} in its name to write one file per alpha")
    return {
        a: check_results_path(template.replace(ALPHA_PLACEHOLDER, f"{a:g}"), options.overwrite)
        for a in alphas
    }


def _evaluator(options: WiseFtOptions) -> Any:
    from clipctl.soup.heldout import HeldOutEvaluator, evaluation_model

    assert options.held_out is not None
    model, first = evaluation_model(options.model, options.zeroshot, "--data")
    return HeldOutEvaluator(model, first, options.held_out, weights_only=options.weights_only)


def _sweep(options: WiseFtOptions, evaluator: Any, zeroshot: Any, finetuned: Any, paths: dict) -> tuple:
    """Evaluate every mix; write its results; return (best alpha, its state dict, top-1 per alpha)."""
    from clipctl.eval.results import write_results
    from clipctl.soup.averaging import interpolate

    best: tuple[float, float, Any] | None = None
    top1: dict[float, float] = {}
    for alpha in paths:
        mix = interpolate(zeroshot.state_dict, finetuned.state_dict, alpha)
        docs = evaluator.evaluate(mix, f"wise-ft alpha={alpha:g}")
        for doc in docs:
            doc["wise_ft"] = {"alpha": alpha, "zeroshot": options.zeroshot, "finetuned": options.finetuned}
        write_results(paths[alpha], docs, "clipctl", overwrite=True)
        top1[alpha] = float(docs[0]["metrics"]["top1"])
        if best is None or top1[alpha] > best[1]:
            best = (alpha, top1[alpha], mix)
    assert best is not None
    return best[0], best[2], top1


def run_wise_ft(options: WiseFtOptions) -> WiseFtSummary:
    """Interpolate, (optionally) evaluate each alpha, and write the chosen mix to ``options.out``."""
    from clipctl.soup.averaging import interpolate
    from clipctl.soup.ingredients import check_ingredient_specs, check_same_architecture, read_ingredient
    from clipctl.soup.output import plan_output, write_output

    alphas = parse_alphas(options.alphas)
    if len(alphas) > 1 and options.held_out is None:
        raise ClipctlError("several --alpha values need --data VAL (and --classnames) to choose the best")
    check_ingredient_specs([options.zeroshot, options.finetuned])
    target = plan_output(
        options.out, model=options.model, first_ingredient=options.zeroshot, overwrite=options.overwrite
    )
    paths = results_paths(options, alphas) if options.held_out is not None else {}
    evaluator = _evaluator(options) if options.held_out is not None else None  # data checked before weights
    zeroshot = read_ingredient(options.zeroshot, weights_only=options.weights_only)
    finetuned = read_ingredient(options.finetuned, weights_only=options.weights_only)
    check_same_architecture(zeroshot, finetuned)
    top1: dict[float, float] = {}
    if evaluator is not None:
        alpha, mix, top1 = _sweep(options, evaluator, zeroshot, finetuned, paths)
    else:
        alpha, mix = alphas[0], interpolate(zeroshot.state_dict, finetuned.state_dict, alphas[0])
    description = (
        f"a WiSE-FT weight-space interpolation: {1 - alpha:g} x `{Path(options.zeroshot).name}` (zero-shot) + "
        f"{alpha:g} x `{Path(options.finetuned).name}` (fine-tuned)"
    )
    metadata = {
        "clipctl_wise_ft_alpha": f"{alpha:g}",
        "zeroshot": options.zeroshot,
        "finetuned": options.finetuned,
    }
    written = write_output(
        target,
        mix,
        description=description,
        metadata=metadata,
        overwrite=options.overwrite,
        weights_only=options.weights_only,
    )
    return WiseFtSummary(written, alpha, alphas, top1, paths)
