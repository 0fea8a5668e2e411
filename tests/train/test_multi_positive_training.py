"""``--multi-positive`` and ``--dataset-type imagefolder`` end to end on tiny models: a CSV's label column decides
the positives of a real training run, and training on class folders raises held-out zero-shot accuracy above
the untrained model's (and the run resumes from its own config). The zero-shot figures on handwritten digits
come from ``bench/multi_positive.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from clipctl.eval.zeroshot_job import ZeroShotOptions, run_zeroshot
from clipctl.train.resume import resume_config
from clipctl.train.trainer import run_training
from tests.train.engine_helpers import COLOURS, colour_image, write_tiny_model
from tests.train.test_trainer import one_thread, tiny_config  # noqa: F401 - one_thread: autouse fixture


def _train(tmp_path: Path, name: str, model: str, train_data: str, **args) -> Path:
    data = {"model": model, "train": train_data}
    run_training(tiny_config(data, tmp_path, batch_size=64, name=name, log_every_n_steps=100, seed=0, **args))
    return tmp_path / "runs" / name


def _top1(model: str, weights: str | None, heldout: Path, classnames: Path, templates: str) -> float:
    options = ZeroShotOptions(
        model=model,
        pretrained=weights,
        data=heldout,
        classnames=classnames,
        templates=templates,
        workers=0,
    )
    return float(run_zeroshot(options)["metrics"]["top1"])


def _colour_csv(folder: Path, rows: int) -> str:
    """Unique captions; ``row`` labels are all different, ``colour`` labels join the rows of one colour."""
    rng = np.random.default_rng(0)
    names = list(COLOURS)
    lines = ["filepath,title,row,colour"]
    for i in range(rows):
        name = names[i % 4]
        (folder / f"{i}.png").write_bytes(colour_image(COLOURS[name], rng))
        lines.append(f"{i}.png,a {name} patch number {i},r{i},{name}")
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    return str(folder / "train.csv")


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "epoch_1.pt", weights_only=True)["state_dict"]


def test_csv_labels_reach_the_loss_through_the_trainer(tmp_path):
    """Same data, seed and order: labels that are all different train exactly like the standard loss, labels
    that repeat train differently, so the label column (not the captions, all unique) decides the positives."""
    model = write_tiny_model(tmp_path)
    csv = _colour_csv(tmp_path, 32)
    common = dict(train_data=csv, csv_separator=",", epochs=1, batch_size=16, warmup=1)
    runs = {
        "plain": {},
        "distinct": {"multi_positive": True, "csv_label_key": "row"},
        "shared": {"multi_positive": True, "csv_label_key": "colour"},
    }
    states = {}
    for name, flags in runs.items():
        data = {"model": model, "train": csv}
        run_training(tiny_config(data, tmp_path, name=name, seed=0, **common, **flags))
        states[name] = _state(tmp_path / "runs" / name)
    for key, value in states["plain"].items():
        assert torch.equal(states["distinct"][key], value), key
    assert any(not torch.equal(states["shared"][k], v) for k, v in states["plain"].items())


def _colour_folders(root: Path, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i:03d}.png").write_bytes(colour_image(rgb, rng))
    Image.open(next(root.glob("*/000.png"))).verify()


@pytest.mark.slow
def test_training_on_class_folders_raises_held_out_zero_shot_accuracy_and_resumes(tmp_path):
    _colour_folders(tmp_path / "train", per_class=16, seed=0)
    _colour_folders(tmp_path / "heldout", per_class=4, seed=1)
    names = tmp_path / "classnames.txt"
    names.write_text("".join(f"{name}\n" for name in sorted(COLOURS)))  # the folders' sorted order
    model = write_tiny_model(tmp_path)
    untrained = _top1(model, None, tmp_path / "heldout", names, "simple")
    run = _train(
        tmp_path,
        "folders",
        model=model,
        train_data=str(tmp_path / "train"),
        dataset_type="imagefolder",
        templates="simple",
        classnames=str(names),
        multi_positive=True,
        epochs=5,
    )
    trained = _top1(model, str(run / "checkpoints" / "epoch_5.pt"), tmp_path / "heldout", names, "simple")
    print("SCORES", untrained, trained)
    assert trained >= untrained + 0.3 and trained >= 0.5, (untrained, trained)  # chance is 1/12
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["dataset_type"], saved["templates"], saved["multi_positive"]) == (
        "imagefolder",
        "simple",
        True,
    )
    # `clipctl resume runs/folders` with one more epoch: everything else comes from config.yaml
    run_training(resume_config(str(run), {"epochs": 6}))
    assert (run / "checkpoints" / "epoch_6.pt").is_file()
