"""`evaluate_zero_shot`: the metrics against brute force, unreadable images, and parity with OpenCLIP's own
zero-shot evaluation on the same random tiny model (weights saved from OpenCLIP, loaded into clipctl)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from clipctl.errors import ClipctlError
from clipctl.eval.classification import evaluate_zero_shot
from tests.eval.eval_data import TINY_CFG, make_image_folder


class FeaturesAsImages(nn.Module):
    """A 'model' whose image features are the inputs themselves (normalised), to test the metric arithmetic."""

    def __init__(self):
        super().__init__()
        self.visual = nn.Linear(1, 1)

    def encode_image(self, images, normalize=False):
        return nn.functional.normalize(images, dim=-1) if normalize else images


def _brute_force(features, targets, classifier):
    logits = 100 * nn.functional.normalize(features, dim=-1) @ classifier
    order = torch.argsort(logits, dim=1, descending=True)
    top1 = (order[:, 0] == targets).double().mean()
    top5 = (order[:, :5] == targets[:, None]).any(dim=1).double().mean()
    recalls = [
        (order[targets == c, 0] == c).double().mean()
        for c in range(classifier.shape[1])
        if (targets == c).any()
    ]
    return float(top1), float(top5), float(torch.stack(recalls).mean())


def test_metrics_match_brute_force_and_unreadable_images_are_counted():
    g = torch.Generator().manual_seed(0)
    num_classes, dim = 9, 12
    classifier = nn.functional.normalize(torch.randn(dim, num_classes, generator=g), dim=0)
    features = torch.randn(40, dim, generator=g)
    targets = torch.randint(0, num_classes - 1, (40,), generator=g)  # the last class has no images
    batches = [
        (features[:15], targets[:15], [("bad1.jpg", "broken")]),
        (None, None, [("bad2.jpg", "broken"), ("bad3.jpg", "broken")]),
        (features[15:], targets[15:]),
    ]
    scores = evaluate_zero_shot(
        FeaturesAsImages(), batches, classifier, device="cpu", return_predictions=True
    )
    top1, top5, recall = _brute_force(features, targets, classifier)
    assert scores["top1"] == pytest.approx(top1)
    assert scores["top5"] == pytest.approx(top5)
    assert scores["mean_per_class_recall"] == pytest.approx(recall)
    assert scores["num_samples"] == 40 and scores["num_unreadable"] == 3
    assert [name for name, _ in scores["unreadable"]] == ["bad1.jpg", "bad2.jpg", "bad3.jpg"]
    assert torch.equal(scores["targets"], targets)


def test_top5_is_none_with_fewer_than_five_classes():
    classifier = torch.eye(3)
    scores = evaluate_zero_shot(
        FeaturesAsImages(), [(torch.eye(3), torch.tensor([0, 1, 1]))], classifier, device="cpu"
    )
    assert scores["top5"] is None
    assert scores["top1"] == pytest.approx(2 / 3)
    assert scores["mean_per_class_recall"] == pytest.approx((1 + 0.5) / 2)


def test_labels_beyond_the_class_names_and_empty_data_are_errors():
    with pytest.raises(ClipctlError, match="labelled class 5, but there are only 3"):
        evaluate_zero_shot(
            FeaturesAsImages(), [(torch.eye(3), torch.tensor([0, 5, 1]))], torch.eye(3), device="cpu"
        )
    with pytest.raises(ClipctlError, match="all 2 were unreadable"):
        evaluate_zero_shot(
            FeaturesAsImages(), [(None, None, [("a", "x"), ("b", "y")])], torch.eye(3), device="cpu"
        )


# ---- parity with OpenCLIP ----------------------------------------------------------------------------------------

CLASSNAMES = ["cat", "dog", "goldfish", "traffic light", "ice cream", "school bus"]
TEMPLATES = ["a photo of a {}.", "a drawing of the {}.", "{}"]


def _openclip_accuracy(output, target, topk=(1,)):
    """OpenCLIP 3.3's trainer helper, minus its ``float(1-element array)`` that this NumPy refuses."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [float(correct[:k].reshape(-1).float().sum()) for k in topk]


def test_zero_shot_matches_openclip_on_the_same_weights(tmp_path, monkeypatch):
    open_clip = pytest.importorskip("open_clip")
    import open_clip_train.zero_shot as openclip_zero_shot
    from open_clip_train.zero_shot import run as openclip_run

    monkeypatch.setattr(openclip_zero_shot, "accuracy", _openclip_accuracy)
    from torchvision.datasets import ImageFolder

    import clipctl
    from clipctl.eval.datasets import collate_classification, scan_image_folder
    from clipctl.eval.zeroshot import build_zero_shot_classifier
    from clipctl.eval.zeroshot_job import ZeroShotOptions, run_zeroshot

    torch.manual_seed(0)
    reference = open_clip.model.CLIP(**TINY_CFG).eval()
    weights = tmp_path / "openclip_weights.pt"
    torch.save(reference.state_dict(), weights)
    config = tmp_path / "tiny-parity.json"
    config.write_text(json.dumps(TINY_CFG))
    data = make_image_folder(
        tmp_path / "data", {f"{i:02d}_{n.replace(' ', '_')}": 4 for i, n in enumerate(CLASSNAMES)}
    )
    classnames_file = tmp_path / "classnames.txt"
    classnames_file.write_text("\n".join(CLASSNAMES) + "\n")
    templates_file = tmp_path / "templates.txt"
    templates_file.write_text("\n".join(TEMPLATES) + "\n")

    # OpenCLIP: its eval transform, its classifier, its trainer's zero-shot loop.
    preprocess = open_clip.image_transform(TINY_CFG["vision_cfg"]["image_size"], is_train=False)
    loader = torch.utils.data.DataLoader(ImageFolder(str(data), transform=preprocess), batch_size=5)
    tokenizer = open_clip.SimpleTokenizer(context_length=TINY_CFG["text_cfg"]["context_length"])
    oc_classifier = open_clip.build_zero_shot_classifier(
        reference, tokenizer, CLASSNAMES, TEMPLATES, device="cpu"
    )
    args = SimpleNamespace(device="cpu", precision="fp32", batch_size=5)
    oc_top1, oc_top5 = openclip_run(reference, oc_classifier, loader, args)
    with torch.no_grad():
        oc_logits = torch.cat(
            [100.0 * reference.encode_image(x, normalize=True) @ oc_classifier for x, _ in loader]
        )

    # clipctl: the same weights loaded strictly into its own model, its own loader and classifier.
    results = run_zeroshot(
        ZeroShotOptions(
            model=str(config),
            pretrained=str(weights),
            data=str(data),
            classnames=str(classnames_file),
            templates=str(templates_file),
            batch_size=5,
            workers=0,
        )
    )
    assert results["metrics"]["top1"] == pytest.approx(oc_top1, abs=1e-12)
    assert results["metrics"]["top5"] == pytest.approx(oc_top5, abs=1e-12)

    model, _, ours_preprocess = clipctl.create_model_and_transforms(str(config), str(weights))
    model.eval()
    classifier = build_zero_shot_classifier(model, clipctl.get_tokenizer(str(config)), CLASSNAMES, TEMPLATES)
    torch.testing.assert_close(classifier, oc_classifier, rtol=1e-5, atol=1e-6)
    folder = scan_image_folder(data)
    folder.transform = ours_preprocess
    ours_loader = torch.utils.data.DataLoader(folder, batch_size=5, collate_fn=collate_classification)
    scores = evaluate_zero_shot(model, ours_loader, classifier, device="cpu", return_predictions=True)
    torch.testing.assert_close(scores["logits"], oc_logits, rtol=1e-5, atol=1e-4)
    assert torch.equal(scores["predictions"], oc_logits.argmax(dim=1))
    assert scores["top1"] == pytest.approx(oc_top1, abs=1e-12)
