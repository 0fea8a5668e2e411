"""`clipctl soup`: average checkpoints of one architecture -- uniformly, with given weights, or greedily
(adding a checkpoint only if held-out zero-shot accuracy does not drop).

Every input is checked (checkpoints exist, weights parse and sum to 1, the output can be written, the held-out
data and class names are there) before any weights are read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipctl.errors import ClipctlError
from clipctl.soup.heldout import HeldOutOptions

GREEDY_SOUP_LABEL = "greedy soup"


@dataclass
class SoupOptions:
    checkpoints: list[str]
    out: str | os.PathLike
    model: str | None = None  # needed for --greedy and for a Hub-layout --out, unless a checkpoint names it
    weights: str | None = None  # "0.5,0.3,0.2"; None: uniform
    greedy: bool = False
    held_out: HeldOutOptions | None = None  # --data VAL ... (greedy only)
    results: str | os.PathLike | None = None  # greedy: every candidate's held-out results
    overwrite: bool = False
    weights_only: bool = True


@dataclass
class SoupSummary:
    out: Path
    method: str  # "uniform" | "weighted" | "greedy"
    checkpoints: list[str]
    weights: list[float]  # per checkpoint, in command-line order (0 for those a greedy soup left out)
    greedy: Any = None  # clipctl.soup.greedy.GreedySoup
    results: Path | None = None
    documents: list[dict[str, Any]] = field(default_factory=list)


def _check_options(options: SoupOptions) -> tuple[str, list[float] | None]:
    from clipctl.soup.averaging import parse_weights
    from clipctl.soup.ingredients import check_ingredient_specs

    check_ingredient_specs(options.checkpoints)
    if options.greedy and options.weights is not None:
        raise ClipctlError("--greedy chooses its own weights; leave out --weights")
    if options.greedy and options.held_out is None:
        raise ClipctlError("--greedy needs --data VAL (and --classnames FILE) to measure held-out accuracy")
    if not options.greedy and options.held_out is not None:
        raise ClipctlError("--data goes with --greedy (a uniform or weighted soup needs no held-out set)")
    if options.results is not None and not options.greedy:
        raise ClipctlError("--results goes with --greedy")
    if options.weights is not None:
        return "weighted", parse_weights(options.weights, len(options.checkpoints))
    return ("greedy" if options.greedy else "uniform"), None


def check_results_path(path: str | os.PathLike, overwrite: bool) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        raise ClipctlError(f"--results {path} is a folder; give a .json file path")
    if path.exists() and not overwrite:
        raise ClipctlError(f"--results {path} exists; pass --overwrite to replace it")
    return path


def _average(options: SoupOptions, weights: list[float] | None) -> dict[str, Any]:
    from clipctl.soup.averaging import WeightedSum
    from clipctl.soup.ingredients import check_same_architecture, read_ingredient

    total, first = WeightedSum(), None
    for index, spec in enumerate(options.checkpoints):
        ingredient = read_ingredient(spec, weights_only=options.weights_only)
        if first is None:
            first = ingredient
        else:
            check_same_architecture(first, ingredient)
        total.add(ingredient.state_dict, 1.0 if weights is None else weights[index])
    return total.result(float(len(options.checkpoints)) if weights is None else 1.0)


def _greedy(options: SoupOptions) -> tuple[Any, list[dict[str, Any]]]:
    from clipctl.soup.greedy import greedy_soup
    from clipctl.soup.heldout import HeldOutEvaluator, evaluation_model
    from clipctl.soup.ingredients import read_ingredient

    assert options.held_out is not None
    model, first = evaluation_model(options.model, options.checkpoints[0], "--greedy")
    evaluator = HeldOutEvaluator(model, first, options.held_out, weights_only=options.weights_only)
    result = greedy_soup(
        options.checkpoints,
        lambda spec: read_ingredient(spec, weights_only=options.weights_only),
        evaluator.top1,
    )
    # each checkpoint alone, then the soup (named for what it is, whichever step produced it)
    docs = [doc for spec in options.checkpoints for doc in evaluator.documents[spec]]
    for doc in evaluator.documents[result.label]:
        docs.append(
            {**doc, "pretrained": GREEDY_SOUP_LABEL, "soup": {"method": "greedy", "kept": result.kept}}
        )
    return result, docs


def run_soup(options: SoupOptions) -> SoupSummary:
    """Make the soup and write it to ``options.out`` (a weights file or a Hub-layout folder)."""
    from clipctl.soup.output import plan_output, write_output

    method, weights = _check_options(options)
    target = plan_output(
        options.out, model=options.model, first_ingredient=options.checkpoints[0], overwrite=options.overwrite
    )
    results = check_results_path(options.results, options.overwrite) if options.results else None
    greedy, docs = None, []
    if method == "greedy":
        greedy, docs = _greedy(options)
        state_dict = greedy.state_dict
        kept = set(greedy.kept)
        weights = [1 / len(kept) if spec in kept else 0.0 for spec in options.checkpoints]
    else:
        state_dict = _average(options, weights)
        weights = weights or [1 / len(options.checkpoints)] * len(options.checkpoints)
    description = describe_soup(method, options.checkpoints, weights)
    metadata = {
        "clipctl_soup": method,
        "ingredients": json.dumps(options.checkpoints),
        "weights": json.dumps(weights),
    }
    written = write_output(
        target,
        state_dict,
        description=description,
        metadata=metadata,
        overwrite=options.overwrite,
        weights_only=options.weights_only,
    )
    if results is not None and greedy is not None:
        write_greedy_results(results, greedy, docs)
    return SoupSummary(written, method, list(options.checkpoints), weights, greedy, results, docs)


def describe_soup(method: str, checkpoints: list[str], weights: list[float]) -> str:
    used = [(Path(spec).name or spec, w) for spec, w in zip(checkpoints, weights, strict=True) if w > 0]
    if method == "weighted":
        parts = ", ".join(f"`{name}` x {w:g}" for name, w in used)
        return f"a weighted soup (weight-space average) of {len(used)} checkpoints: {parts}"
    names = ", ".join(f"`{name}`" for name, _ in used)
    kind = "greedy soup" if method == "greedy" else "uniform soup"
    return f"a {kind} (weight-space average) of {len(used)} checkpoint(s): {names}"


def write_greedy_results(path: Path, greedy: Any, docs: list[dict[str, Any]]) -> None:
    """The held-out results of every checkpoint and candidate soup, plus the steps (readable by `eval report`)."""
    from clipctl.eval.results import write_json_atomic

    document = {
        "task": "greedy_soup",
        "held_out_top1": greedy.top1,
        "kept": greedy.kept,
        "steps": [vars(step) for step in greedy.steps],
        "results": docs,
    }
    write_json_atomic(path, document)
