import pytest
import torch

from clipctl.errors import ClipctlError
from clipctl.eval.zeroshot import build_zero_shot_classifier, render_prompts
from clipctl.eval.zeroshot_metadata import (
    IMAGENET_CLASSNAMES,
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_IMAGENET_TEMPLATES,
    load_classnames,
    load_templates,
)
from clipctl.tokenizer import SimpleTokenizer

open_clip = pytest.importorskip("open_clip")
from open_clip.zero_shot_classifier import build_zero_shot_classifier as oc_build  # noqa: E402

CLASSNAMES = [
    "cat",
    "dog",
    "goldfish",
    "traffic light",
    "ice cream",
    "school bus",
    "tench",
    "lab coat",
    "airliner",
    "bagel",
    "zebra",
    "red wine",
    "volcano",
]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = open_clip.model.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    return model.eval()


@pytest.mark.parametrize("per_batch", [10, 4, None])
def test_matches_openclip_classifier(tiny_model, per_batch):
    tokenizer = SimpleTokenizer(context_length=16)
    templates = SIMPLE_IMAGENET_TEMPLATES
    ours = build_zero_shot_classifier(
        tiny_model, tokenizer, CLASSNAMES, templates, num_classes_per_batch=per_batch
    )
    # OpenCLIP formats strings positionally ("{}"); hand it callables for our "{c}" templates.
    as_callables = [lambda c, t=t: t.format(c=c) for t in templates]
    ref = oc_build(tiny_model, tokenizer, CLASSNAMES, as_callables, num_classes_per_batch=per_batch)
    assert ours.shape == (32, len(CLASSNAMES))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.norm(dim=0), torch.ones(len(CLASSNAMES)))


def test_callable_and_positional_templates(tiny_model):
    tokenizer = SimpleTokenizer(context_length=16)
    a = build_zero_shot_classifier(tiny_model, tokenizer, CLASSNAMES[:3], ["a photo of a {c}.", "art of {c}"])
    b = build_zero_shot_classifier(
        tiny_model, tokenizer, CLASSNAMES[:3], ["a photo of a {}.", lambda c: f"art of {c}"]
    )
    torch.testing.assert_close(a, b)


def test_render_prompts_is_class_major():
    assert render_prompts(["x", "y"], ["a {c}", "b {c}"]) == ["a x", "b x", "a y", "b y"]


def test_empty_classnames_or_templates_are_clear_errors(tiny_model):
    tokenizer = SimpleTokenizer(context_length=16)
    with pytest.raises(ClipctlError, match="class name"):
        build_zero_shot_classifier(tiny_model, tokenizer, [], ["{c}"])
    with pytest.raises(ClipctlError, match="template"):
        build_zero_shot_classifier(tiny_model, tokenizer, ["cat"], [])


def test_builtin_metadata_lists():
    assert len(IMAGENET_CLASSNAMES) == 1000 and IMAGENET_CLASSNAMES[0] == "tench"
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80 and len(SIMPLE_IMAGENET_TEMPLATES) == 7
    assert all("{c}" in t for t in OPENAI_IMAGENET_TEMPLATES + SIMPLE_IMAGENET_TEMPLATES)
    assert load_templates("openai") == OPENAI_IMAGENET_TEMPLATES
    assert load_templates("simple") == SIMPLE_IMAGENET_TEMPLATES


def test_load_templates_from_file(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("a photo of a {c}.\n\n  a sketch of the {c}  \n")
    assert load_templates(str(path)) == ["a photo of a {c}.", "a sketch of the {c}"]


@pytest.mark.parametrize("content", ["a photo of a cat\n", "a {c} of {x}\n", "broken {c\n", "\n\n"])
def test_load_templates_rejects_bad_files(tmp_path, content):
    path = tmp_path / "templates.txt"
    path.write_text(content)
    with pytest.raises(ClipctlError):
        load_templates(str(path))


def test_load_templates_unknown_spec_is_clear_error(tmp_path):
    with pytest.raises(ClipctlError, match="neither 'openai', 'simple' nor an existing file"):
        load_templates("fancy")


def test_load_classnames(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("  cat \n\ndog\nice cream\n")
    assert load_classnames(path) == ["cat", "dog", "ice cream"]
    path.write_text("\n  \n")
    with pytest.raises(ClipctlError, match="empty"):
        load_classnames(path)
    with pytest.raises(ClipctlError, match="does not exist"):
        load_classnames(tmp_path / "missing.txt")
