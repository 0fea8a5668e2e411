"""How big each demo is: the dataset it generates and the recipe it trains with.

The recipes (``recipes/demo.yaml``, ``recipes/demo_quick.yaml``) hold the training settings, as every other run's
do; this module holds only what the recipe format has no place for (the generated dataset's size) and the names
of the files the demo writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DemoSettings:
    """One demo size. ``image_size`` is not here: the data is drawn at the recipe model's input size."""

    recipe: str
    num_train: int
    num_heldout_per_class: int
    samples_per_shard: int
    grid_images: int = 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# 16,000 distinct images, seen a few times each: the epoch count (and the time it was measured to take) is in
# recipes/demo.yaml.
DEFAULT = DemoSettings(recipe="demo", num_train=16_000, num_heldout_per_class=20, samples_per_shard=2_000)
# Small enough for the test suite: a few hundred steps' worth of data, learnt well above chance.
QUICK = DemoSettings(recipe="demo_quick", num_train=2_048, num_heldout_per_class=4, samples_per_shard=512)

# The demo folder's layout (under --out).
MANIFEST = "demo.json"
DATA_DIR = "data"
RUNS_DIR = "runs"
RUN_NAME = "demo"
RESULTS_FILE = "zeroshot.json"
EMBEDDINGS_FILE = "heldout_embeddings.parquet"
INDEX_DIR = "index"  # `clipctl index` of the held-out embeddings
LOSS_CURVE_FILE = "loss_curve.png"  # in the run folder
PREDICTIONS_FILE = "predictions.png"  # in the run folder
# What the demo may find in its own folder; anything else makes it refuse to touch the folder.
OWN_ENTRIES = (MANIFEST, DATA_DIR, RUNS_DIR, RESULTS_FILE, EMBEDDINGS_FILE, INDEX_DIR)
MANIFEST_VERSION = 1


def settings_for(quick: bool) -> DemoSettings:
    return QUICK if quick else DEFAULT
