"""`clipctl eval linear-probe` as a job: it learns what zero-shot cannot, agrees with scikit-learn on the same
cached features, samples few-shot sets by seed, and reads its features from the cache on a second run."""

from __future__ import annotations

import json

import pytest
import torch

import clipctl
from clipctl.errors import ClipctlError
from clipctl.eval.linear_probe import LinearProbeOptions, linear_probe_document, probe_data, run_linear_probe
from tests.eval.eval_data import tiny_model_files


def _heldout(folder, seed: int, per_class: int) -> str:
    from clipctl.data.synth import synthesize_dataset

    return synthesize_dataset(
        folder, seed=seed, num_train=1, num_heldout_per_class=per_class, image_size=32
    ).heldout_dir


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Generated coloured shapes (32 classes, chance 1/32): training and test images from different seeds."""
    root = tmp_path_factory.mktemp("shapes")
    train, test = _heldout(root / "a", 0, 10), _heldout(root / "b", 1, 4)
    return train, test, str(root / "a" / "classnames.txt")


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """tiny-ViT-8-64 with random weights saved to a file (so its features can be cached)."""
    path = tmp_path_factory.mktemp("vit") / "random.pt"
    torch.manual_seed(0)
    torch.save(clipctl.create_model("tiny-ViT-8-64").state_dict(), path)
    return "tiny-ViT-8-64", str(path)


@pytest.fixture(scope="module")
def vit_cache(tmp_path_factory):
    """One feature cache for the tiny-ViT tests: its features are encoded once for the module."""
    return tmp_path_factory.mktemp("vit-cache")


def _options(model, shapes, tmp_path, **kwargs) -> LinearProbeOptions:
    return LinearProbeOptions(
        model=model[0],
        pretrained=model[1],
        train=shapes[0],
        test=shapes[1],
        cache_dir=tmp_path / "cache",
        workers=0,
        **kwargs,
    )


def test_probe_beats_zero_shot_of_the_same_model(vit, shapes, vit_cache):
    from clipctl.eval.logistic import fit_logistic_regression, top1
    from clipctl.eval.zeroshot_job import ZeroShotOptions, run_zeroshot

    train, test, classnames = shapes
    zero_shot = run_zeroshot(
        ZeroShotOptions(vit[0], vit[1], data=test, classnames=classnames, templates="simple", workers=0)
    )
    probe = run_linear_probe(_options(vit, shapes, vit_cache))
    # Random weights: zero-shot has no text-image alignment to use and sits near chance (1/32). The probe learns
    # colour and shape from 10 labelled images per class and must do far better on other drawings of them.
    assert zero_shot["metrics"]["top1"] < 0.08
    assert probe["metrics"]["top1"] > 0.15
    assert probe["metrics"]["top1"] > zero_shot["metrics"]["top1"] + 0.1
    # The control: the same cached features with shuffled training labels leave nothing to learn, so the
    # accuracy above comes from the labels, not from anything the test images share.
    data = probe_data(_options(vit, shapes, vit_cache))
    x, y = data.train_features.features, data.train_features.labels
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    control = fit_logistic_regression(x, shuffled, 32, probe["weight_decay"])
    assert top1(control.logits(data.test_features.features), data.test_features.labels) < 0.1


def test_equals_scikit_learn_on_the_same_cached_features(vit, shapes, vit_cache):
    from sklearn.linear_model import LogisticRegression

    # A fixed weight decay: near the bottom of the grid (1e-6) the objective is nearly flat and two solvers
    # stopping at the same gradient tolerance can still part by a few test images.
    options = _options(vit, shapes, vit_cache, weight_decay=1e-4)
    doc = run_linear_probe(options)
    data = probe_data(options)
    assert data.train_features.cached == 320  # the features scikit-learn gets are the cached ones
    x, y = data.train_features.features.numpy(), data.train_features.labels.numpy()
    reference = LogisticRegression(C=1 / (1e-4 * len(x)), max_iter=10_000).fit(x, y)
    theirs = reference.score(data.test_features.features.numpy(), data.test_features.labels.numpy())
    assert abs(doc["metrics"]["top1"] - theirs) <= 0.01


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The small random-weight CLIP of the eval tests (16 px): fast, for the mechanics."""
    return tiny_model_files(tmp_path_factory.mktemp("tiny"))


def test_second_run_reads_every_feature_from_the_cache_without_loading_the_model(
    tiny, shapes, tmp_path, monkeypatch
):
    import clipctl.eval.loading as loading

    options = _options(tiny, shapes, tmp_path, weight_decay=1e-3)
    first = linear_probe_document(options)
    assert first["features"]["train"] == {"encoded": 320, "cached": 0}
    assert first["features"]["test"] == {"encoded": 128, "cached": 0}

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every feature is cached")

    monkeypatch.setattr(loading, "load_model", no_model)
    second = linear_probe_document(options)
    assert second["features"]["train"] == {"encoded": 0, "cached": 320}
    assert second["features"]["test"] == {"encoded": 0, "cached": 128}
    assert second["metrics"] == first["metrics"]


def test_an_interrupted_extraction_continues_where_it_stopped(tiny, shapes, tmp_path, monkeypatch):
    import clipctl.eval.probe_features as probe_features

    options = _options(tiny, shapes, tmp_path, weight_decay=1e-3, batch_size=32)
    real_add, calls = probe_features.FeatureStore.add, []

    def add_then_crash(self, keys, features, labels):
        calls.append(len(keys))
        real_add(self, keys, features, labels)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(probe_features.FeatureStore, "add", add_then_crash)
    with pytest.raises(KeyboardInterrupt):
        linear_probe_document(options)
    monkeypatch.setattr(probe_features.FeatureStore, "add", real_add)
    resumed = linear_probe_document(options)
    assert resumed["features"]["train"] == {"encoded": 320 - 96, "cached": 96}


def test_other_weights_never_reuse_cached_features(tiny, shapes, tmp_path):
    options = _options(tiny, shapes, tmp_path, weight_decay=1e-3)
    linear_probe_document(options)
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    torch.save(clipctl.create_model(tiny[0]).state_dict(), other)
    doc = linear_probe_document(_options((tiny[0], str(other)), shapes, tmp_path, weight_decay=1e-3))
    assert doc["features"]["train"] == {"encoded": 320, "cached": 0}
    assert len(list((tmp_path / "cache").rglob("*.parquet"))) == 4  # 2 datasets x 2 weights


def test_few_shot_is_deterministic_per_seed(tiny, shapes, tmp_path):
    def run(seed, weight_decay=1e-3):
        return linear_probe_document(
            _options(tiny, shapes, tmp_path, few_shot=3, seed=seed, weight_decay=weight_decay)
        )

    first, again, other = run(0), run(0), run(1)
    assert first["num_train"] == 3 * 32
    assert first["few_shot_sample"] == again["few_shot_sample"] != other["few_shot_sample"]
    assert first["metrics"] == again["metrics"]
    # with the weight decay search too: the same held-out split, the same choice, the same numbers
    searched, searched_again = run(0, None), run(0, None)
    assert searched["weight_decay_search"] == searched_again["weight_decay_search"]
    assert searched["metrics"] == searched_again["metrics"]


def test_one_shot_needs_a_given_weight_decay(tiny, shapes, tmp_path):
    with pytest.raises(ClipctlError, match="pass --wd VALUE"):
        linear_probe_document(_options(tiny, shapes, tmp_path, few_shot=1))
    assert (
        linear_probe_document(_options(tiny, shapes, tmp_path, few_shot=1, weight_decay=1e-3))["num_train"]
        == 32
    )
    with pytest.raises(ClipctlError, match="has only 10 training image"):
        linear_probe_document(_options(tiny, shapes, tmp_path, few_shot=11))


def _write_csv(path, rows):
    path.write_text("filepath,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


def test_csv_labels_and_clip_benchmark_folders(tiny, tmp_path):
    from tests.eval.eval_data import make_clip_benchmark_classification, make_image_folder

    folder = make_image_folder(tmp_path / "imgs", {"cat": 6, "dog": 6, "eel": 6})
    rows = [(f"{name}/{i}.png", name) for name in ("cat", "dog", "eel") for i in range(6)]
    train = _write_csv(tmp_path / "imgs" / "train.csv", rows[::2] + rows[1::6])
    test = _write_csv(tmp_path / "imgs" / "test.csv", [r for r in rows if r not in rows[::2]])
    doc = run_linear_probe(
        LinearProbeOptions(tiny[0], tiny[1], train, test, cache_dir=tmp_path / "c", workers=0)
    )
    assert doc["num_classes"] == 3 and doc["metrics"]["top5"] is None
    assert folder.is_dir()

    root = make_clip_benchmark_classification(tmp_path / "wds_toy", ["a", "b"], [[0, 1, 0, 1], [1, 0, 1, 0]])
    (root / "test").rename(root / "train")
    make_clip_benchmark_classification(tmp_path / "wds_toy", ["a", "b"], [[0, 1, 1, 0]])
    out = tmp_path / "cb.json"
    options = LinearProbeOptions(
        tiny[0], tiny[1], root, root, cache_dir=tmp_path / "c", workers=0, out=out, format="clip_benchmark"
    )
    run_linear_probe(options)
    text = out.read_text()
    assert "NaN" not in text
    written = json.loads(text)
    assert written["dataset"] == "wds/toy" and written["task"] == "linear_probe"
    assert written["metrics"]["lp_acc5"] is None and written["metrics"]["fewshot_k"] == -1
    again = linear_probe_document(
        LinearProbeOptions(tiny[0], tiny[1], root, root, cache_dir=tmp_path / "c", workers=0)
    )
    assert again["features"]["train"] == {"encoded": 0, "cached": 8}


def test_unreadable_images_are_skipped_counted_and_not_retried(tiny, tmp_path, monkeypatch):
    from tests.eval.eval_data import make_image_folder

    train = make_image_folder(tmp_path / "train", {"a": 4, "b": 4})
    test = make_image_folder(tmp_path / "test", {"a": 2, "b": 2}, seed=1)
    (train / "a" / "0.png").write_bytes(b"not a png")
    options = LinearProbeOptions(
        tiny[0], tiny[1], train, test, cache_dir=tmp_path / "c", workers=0, weight_decay=1e-3
    )
    first = linear_probe_document(options)
    assert first["num_unreadable"] == 1 and first["unreadable"][0][0] == "a/0.png"
    assert first["num_train"] == 7
    import clipctl.eval.loading as loading

    monkeypatch.setattr(
        loading, "load_model", lambda *a, **k: pytest.fail("model loaded for a known-bad image")
    )
    second = linear_probe_document(options)
    assert second["num_unreadable"] == 1 and second["features"]["train"]["encoded"] == 0


def test_test_classes_are_matched_to_training_classes_by_name(tiny, tmp_path):
    from tests.eval.eval_data import make_image_folder

    train = make_image_folder(tmp_path / "train", {"a": 4, "b": 4, "c": 4})
    subset = make_image_folder(tmp_path / "subset", {"c": 2, "a": 2}, seed=1)
    doc = run_linear_probe(
        LinearProbeOptions(
            tiny[0], tiny[1], train, subset, cache_dir=tmp_path / "c", workers=0, weight_decay=1e-3
        )
    )
    assert doc["num_classes"] == 3 and doc["num_samples"] == 4
    extra = make_image_folder(tmp_path / "extra", {"a": 2, "zebra": 2}, seed=2)
    with pytest.raises(ClipctlError, match="1 class\\(es\\) the training data lacks \\('zebra'\\)"):
        linear_probe_document(
            LinearProbeOptions(tiny[0], tiny[1], train, extra, cache_dir=tmp_path / "c", workers=0)
        )


def test_random_weights_are_never_cached(tiny, shapes, tmp_path):
    doc = linear_probe_document(_options((tiny[0], "none"), shapes, tmp_path, weight_decay=1e-3))
    assert doc["features"]["cache_dir"] is None and not (tmp_path / "cache").exists()
