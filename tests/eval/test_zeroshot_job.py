"""`run_zeroshot` end to end on generated data: the results document, bad input, ImageNet-V2's layout,
CLIP_benchmark's layout and result shape, and the output file rules."""

from __future__ import annotations

import json

import pytest

from clipctl.errors import ClipctlError, UnknownNameError
from clipctl.eval.zeroshot_job import ZeroShotOptions, read_templates, run_zeroshot
from tests.eval.eval_data import (
    image_bytes,
    make_clip_benchmark_classification,
    make_image_folder,
    tiny_model_files,
)

CLASSES = {"apple": 3, "boat": 2, "car": 2, "dog": 2, "egg": 2, "fox": 2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_files(tmp_path_factory.mktemp("model"))


@pytest.fixture
def folder(tmp_path):
    root = make_image_folder(tmp_path / "heldout", CLASSES)
    (root / "apple" / "broken.jpg").write_text("not an image")
    (root / "boat" / "README.md").write_text("# notes")
    names = tmp_path / "classnames.txt"
    names.write_text("".join(f"{c}\n" for c in CLASSES))
    return root, names


def test_results_document_and_file(tiny, folder, tmp_path):
    config, weights = tiny
    root, names = folder
    out = tmp_path / "results.json"
    results = run_zeroshot(
        ZeroShotOptions(
            model=config,
            pretrained=weights,
            data=root,
            classnames=names,
            templates="simple",
            out=out,
            workers=0,
        )
    )
    assert results["model"] == config and results["pretrained"] == weights
    assert results["dataset"] == "heldout" and results["task"] == "zeroshot_classification"
    metrics = results["metrics"]
    assert set(metrics) == {"top1", "top5", "mean_per_class_recall"}
    assert all(0 <= v <= 1 for v in metrics.values())
    assert results["num_samples"] == sum(CLASSES.values())
    assert results["num_unreadable"] == 1 and results["unreadable"][0][0] == "apple/broken.jpg"
    assert results["num_skipped_files"] == 1 and results["num_classes"] == len(CLASSES)
    assert json.loads(out.read_text()) == results
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_demo_style_call_with_synth_data(tiny, tmp_path):
    """What `clipctl demo` calls: positional-free keywords, the synth set's own class names and templates."""
    from clipctl.data.synth import synthesize_dataset

    config, weights = tiny
    synth = synthesize_dataset(
        tmp_path / "synth", num_train=4, num_heldout_per_class=1, image_size=16, samples_per_shard=4
    )
    results = run_zeroshot(
        ZeroShotOptions(
            model=config,
            pretrained=weights,
            data=synth.heldout_dir,
            classnames=synth.classnames_file,
            templates=synth.templates_file,
            out=str(tmp_path / "zeroshot.json"),
        )
    )
    assert 0 <= results["metrics"]["top1"] <= 1
    assert results["num_samples"] == synth.num_heldout
    assert results["num_templates"] == len(read_templates(synth.templates_file))


def test_classnames_that_do_not_match_the_folders_fail_before_the_model_loads(folder, tmp_path):
    root, names = folder
    names.write_text("apple\nboat\n")
    with pytest.raises(ClipctlError, match="has 2 names but --data .* has 6 class folders"):
        run_zeroshot(ZeroShotOptions(model="no-such-model", pretrained=None, data=root, classnames=names))
    with pytest.raises(ClipctlError, match="needs --classnames FILE"):
        run_zeroshot(ZeroShotOptions(model="no-such-model", pretrained=None, data=root))


def test_unknown_model_is_a_clear_error(folder):
    root, names = folder
    with pytest.raises(UnknownNameError, match="unknown model"):
        run_zeroshot(ZeroShotOptions(model="ViT-B-33", pretrained=None, data=root, classnames=names))


def test_nothing_to_evaluate_and_empty_folder(tmp_path):
    with pytest.raises(ClipctlError, match="nothing to evaluate"):
        run_zeroshot(ZeroShotOptions(model="x", pretrained=None))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ClipctlError, match="holds no images"):
        run_zeroshot(
            ZeroShotOptions(
                model="x", pretrained=None, data=tmp_path / "empty", classnames=tmp_path / "c.txt"
            )
        )


def test_template_files_take_c_or_empty_braces(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a photo of a {c}.\n\nart of {}\n")
    assert read_templates(path) == ["a photo of a {c}.", "art of {}"]
    for bad in ("no placeholder\n", "a {c} and {x}\n", "broken {c\n", "\n"):
        path.write_text(bad)
        with pytest.raises(ClipctlError):
            read_templates(path)
    with pytest.raises(ClipctlError, match="neither 'openai', 'simple' nor an existing file"):
        read_templates("fancy")


def test_every_image_unreadable_is_an_error_not_a_crash(tiny, tmp_path):
    config, weights = tiny
    for name in ("a", "b"):
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "x.jpg").write_bytes(b"junk")
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    with pytest.raises(ClipctlError, match="all 2 were unreadable"):
        run_zeroshot(
            ZeroShotOptions(
                model=config, pretrained=weights, data=tmp_path / "d", classnames=names, workers=0
            )
        )


def test_imagenet_v2_numeric_folders_and_combined_document(tiny, tmp_path):
    config, weights = tiny
    v2 = tmp_path / "imagenetv2"
    for i in range(1000):
        (v2 / str(i)).mkdir(parents=True)
    for i, label in enumerate((2, 10, 999)):
        (v2 / str(label) / f"{i}.jpeg").write_bytes(image_bytes(i, "JPEG"))
    data = make_image_folder(tmp_path / "mine", {"x": 1, "y": 1})
    names = tmp_path / "n.txt"
    names.write_text("x\ny\n")
    both = run_zeroshot(
        ZeroShotOptions(
            model=config,
            pretrained=weights,
            imagenet_v2=v2,
            data=data,
            classnames=names,
            templates="simple",
            workers=0,
        )
    )
    assert set(both) == {"model", "pretrained", "results"}
    assert [r["dataset"] for r in both["results"]] == ["imagenetv2", "mine"]
    v2_results = both["results"][0]
    assert v2_results["num_classes"] == 1000 and v2_results["num_samples"] == 3
    assert len(v2_results["empty_classes"]) == 997 and "10" not in v2_results["empty_classes"]
    assert both["results"][1]["metrics"]["top5"] is None  # two classes: top-5 is undefined


def test_imagenet_layout_checks(tmp_path):
    make_image_folder(tmp_path / "val", {"n01440764": 1, "n01443537": 1})
    with pytest.raises(ClipctlError, match="has 2 class folders; ImageNet's validation set has 1000"):
        run_zeroshot(ZeroShotOptions(model="x", pretrained=None, imagenet_val=tmp_path / "val"))
    make_image_folder(tmp_path / "v2wrap" / "imagenetv2-matched-frequency-format-val", {"0": 1})
    with pytest.raises(ClipctlError, match="named 0 ... 999.*did you mean"):
        run_zeroshot(ZeroShotOptions(model="x", pretrained=None, imagenet_v2=tmp_path / "v2wrap"))
    with pytest.raises(ClipctlError, match="--classnames goes with --data"):
        run_zeroshot(
            ZeroShotOptions(
                model="x", pretrained=None, imagenet_val=tmp_path / "val", classnames=tmp_path / "c.txt"
            )
        )


def test_clip_benchmark_layout_and_result_shape(tiny, tmp_path):
    config, weights = tiny
    root = make_clip_benchmark_classification(
        tmp_path / "wds_shapes", ["circle", "square", "star"], [[0, 1, 2], [2, 1]], templates=["a {c} shape."]
    )
    out = tmp_path / "cb.json"
    results = run_zeroshot(
        ZeroShotOptions(
            model=config,
            pretrained=weights,
            data=root,
            templates=None,
            out=out,
            format="clip_benchmark",
            workers=0,
        )
    )
    text = out.read_text()
    assert "NaN" not in text
    written = json.loads(text)
    assert written == results
    assert set(written) == {"dataset", "model", "pretrained", "task", "metrics", "language"}
    assert written["dataset"] == "wds/shapes" and written["task"] == "zeroshot_classification"
    assert set(written["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"}
    assert written["metrics"]["acc5"] is None  # CLIP_benchmark writes NaN here; strict JSON says null

    ours = run_zeroshot(
        ZeroShotOptions(model=config, pretrained=weights, data=root, templates=None, workers=0)
    )
    assert ours["templates"] == "dataset" and ours["num_templates"] == 1 and ours["num_samples"] == 5
    assert ours["metrics"]["top1"] == written["metrics"]["acc1"]


def test_output_rules(tiny, folder, tmp_path):
    config, weights = tiny
    root, names = folder
    out = tmp_path / "r.json"
    common = dict(data=root, classnames=names, templates="simple", workers=0)
    out.write_text("precious notes")
    with pytest.raises(ClipctlError, match="exists and is not a results file"):
        run_zeroshot(ZeroShotOptions(model=config, pretrained=weights, out=out, **common))
    assert out.read_text() == "precious notes"
    out.write_text(json.dumps({"model": "RN50", "pretrained": "openai", "metrics": {"top1": 0.6}}))
    with pytest.raises(ClipctlError, match="holds results for model 'RN50'"):
        run_zeroshot(ZeroShotOptions(model=config, pretrained=weights, out=out, **common))
    assert json.loads(out.read_text())["model"] == "RN50"
    run_zeroshot(ZeroShotOptions(model=config, pretrained=weights, out=out, overwrite=True, **common))
    first = json.loads(out.read_text())
    assert first["model"] == config
    run_zeroshot(
        ZeroShotOptions(model=config, pretrained=weights, out=out, **common)
    )  # the same model may replace its own results
    assert json.loads(out.read_text())["metrics"] == first["metrics"]
    with pytest.raises(ClipctlError, match="is a folder"):
        run_zeroshot(ZeroShotOptions(model=config, pretrained=weights, out=tmp_path, **common))
    with pytest.raises(ClipctlError, match="unknown --format"):
        run_zeroshot(ZeroShotOptions(model=config, pretrained=weights, format="csv", **common))


@pytest.mark.parametrize("precision", ["bf16", "amp_bf16"])
def test_reduced_precision_on_cpu(tiny, folder, precision):
    """bf16 weights give bf16 features (scored in float32); amp_bf16 autocasts an fp32 model."""
    config, weights = tiny
    root, names = folder
    results = run_zeroshot(
        ZeroShotOptions(
            model=config,
            pretrained=weights,
            data=root,
            classnames=names,
            templates="simple",
            precision=precision,
            workers=0,
        )
    )
    assert results["precision"] == precision and results["num_samples"] == sum(CLASSES.values())
    with pytest.raises(ClipctlError, match="use --precision bf16"):
        run_zeroshot(
            ZeroShotOptions(model=config, pretrained=weights, data=root, classnames=names, precision="fp16")
        )
