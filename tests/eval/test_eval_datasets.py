"""What the evaluation jobs read: ImageFolders (numeric ImageNet-V2 order, junk files, corrupt images),
CLIP_benchmark's wds layout, retrieval CSVs and shards."""

from __future__ import annotations

import pytest
import torch

from clipctl.errors import ClipctlError
from clipctl.eval.datasets import (
    WdsClassification,
    WdsRetrieval,
    collate_classification,
    collate_retrieval,
    find_clip_benchmark_wds,
    iter_shard_samples,
    open_retrieval_source,
    scan_image_folder,
)
from tests.eval.eval_data import (
    image_bytes,
    make_clip_benchmark_classification,
    make_clip_benchmark_retrieval,
    make_image_folder,
    write_tar,
)


def _to_tensor(image):
    return torch.zeros(3, 2, 2) + image.size[0]


def test_numeric_class_folders_sort_as_numbers(tmp_path):
    root = make_image_folder(tmp_path / "v2", {"10": 1, "2": 1, "0": 1, "1": 2})
    folder = scan_image_folder(root)
    assert folder.classes == ["0", "1", "2", "10"] and folder.numeric_classes
    labels = {p.split("/")[-2]: label for p, label in folder.samples}
    assert labels == {"0": 0, "1": 1, "2": 2, "10": 3}


def test_named_class_folders_sort_as_strings(tmp_path):
    root = make_image_folder(tmp_path / "named", {"b": 1, "a": 1, "c10": 1, "c2": 1})
    assert scan_image_folder(root).classes == ["a", "b", "c10", "c2"]


def test_junk_files_empty_classes_and_hidden_entries(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 2, "dog": 1})
    (root / "empty").mkdir()
    (root / "cat" / "notes.txt").write_text("hello")
    (root / "cat" / ".DS_Store").write_bytes(b"\0")
    (root / ".hidden").mkdir()
    (root / "dog" / "nested").mkdir()
    (root / "dog" / "nested" / "x.png").write_bytes(image_bytes(9))
    folder = scan_image_folder(root)
    assert folder.classes == ["cat", "dog", "empty"]
    assert folder.empty_classes == ["empty"]
    assert folder.skipped_files == ["cat/notes.txt"]
    assert len(folder) == 4


def test_corrupt_images_become_unreadable_items(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 2})
    (root / "cat" / "broken.jpg").write_text("not a jpeg")
    (root / "cat" / "truncated.png").write_bytes(image_bytes(3)[:60])
    folder = scan_image_folder(root)
    folder.transform = _to_tensor
    images, targets, failures = collate_classification([folder[i] for i in range(len(folder))])
    assert images.shape == (2, 3, 2, 2) and targets.tolist() == [0, 0]
    assert sorted(name for name, _ in failures) == ["cat/broken.jpg", "cat/truncated.png"]
    assert all(reason for _, reason in failures)
    assert collate_classification([folder[2]])[0] is None  # a batch of nothing but failures


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no such folder"),
        (lambda p: p.write_text("x"), "is not a folder"),
        (lambda p: p.mkdir(), "no class sub-folders"),
        (lambda p: (p.mkdir(), (p / "a.png").write_bytes(image_bytes(0))), "holds 1 image"),
        (
            lambda p: ((p / "cls").mkdir(parents=True), (p / "cls" / "x.txt").write_text("")),
            "holds no images",
        ),
    ],
)
def test_unusable_folders_are_one_line_errors(tmp_path, setup, message):
    path = tmp_path / "data"
    setup(path)
    with pytest.raises(ClipctlError, match=message):
        scan_image_folder(path)


def test_clip_benchmark_classification_layout(tmp_path):
    root = make_clip_benchmark_classification(
        tmp_path / "wds_tiny", ["cat", "dog", "fish"], [[0, 1], [2, 0, 1]], templates=["a photo of a {c}."]
    )
    for given in (root, root / "test"):
        found = find_clip_benchmark_wds(given)
        assert found is not None and found.root == str(root)
        assert found.classnames == ["cat", "dog", "fish"] and found.templates == ["a photo of a {c}."]
        assert found.dataset_type == "classification" and found.name == "wds/tiny"
        assert [s.rsplit("/", 1)[-1] for s in found.shards] == ["0.tar", "1.tar"]
    items = list(WdsClassification(found.shards, _to_tensor))
    assert [label for _, label in items] == [0, 1, 2, 0, 1]
    assert find_clip_benchmark_wds(tmp_path) is None


def test_clip_benchmark_layout_problems(tmp_path):
    root = make_clip_benchmark_classification(tmp_path / "wds_x", ["a"], [[0], [0]])
    (root / "test" / "1.tar").unlink()
    with pytest.raises(ClipctlError, match="1.tar is missing"):
        find_clip_benchmark_wds(root)
    (root / "test" / "nshards.txt").write_text("two")
    with pytest.raises(ClipctlError, match="nshards.txt must hold one positive number"):
        find_clip_benchmark_wds(root)


def test_shard_samples_without_label_or_with_a_bad_image_are_unreadable(tmp_path):
    shard = write_tar(
        tmp_path / "0.tar",
        {
            "a.png": image_bytes(1),
            "a.cls": b"1",
            "b.png": image_bytes(2),  # no label
            "c.png": b"garbage",
            "c.cls": b"0",
            "d.png": image_bytes(3),
            "d.cls": b"x",
        },
    )
    items = list(WdsClassification([str(shard)], _to_tensor))
    images, targets, failures = collate_classification(items)
    assert targets.tolist() == [1]
    assert [name for name, _ in failures] == ["0.tar:b", "0.tar:c", "0.tar:d"]


def test_damaged_tar_yields_what_it_can_then_one_failure(tmp_path):
    good = write_tar(tmp_path / "g.tar", {f"{i}.jpg": image_bytes(i, "JPEG") for i in range(4)})
    data = good.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    samples = list(iter_shard_samples(str(cut)))
    assert 0 < len(samples) < 5
    assert type(samples[-1]).__name__ == "Unreadable" and "damaged shard" in samples[-1].reason


def test_retrieval_csv_groups_captions_by_image(tmp_path):
    make_image_folder(tmp_path / "imgs", {"x": 3})
    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "filepath,title\n"
        "imgs/x/0.png,first caption\n"
        "imgs/x/1.png,second\n"
        "imgs/x/0.png,another of the first\n"
        "imgs/x/2.png,  \n"
    )
    source = open_retrieval_source(str(csv))
    assert source.kind == "csv" and source.num_images == 2 and source.num_captions == 3
    dataset = source.make_dataset(_to_tensor)
    batch = collate_retrieval([dataset[i] for i in range(len(dataset))])
    assert batch["captions"] == [["first caption", "another of the first"], ["second"]]
    assert batch["names"] == ["imgs/x/0.png", "imgs/x/1.png"]


def test_retrieval_csv_with_wrong_columns_names_the_fix(tmp_path):
    csv = tmp_path / "pairs.tsv"
    csv.write_text("path\tcaption\na.png\thello\n")
    with pytest.raises(ClipctlError, match="--csv-img-key"):
        open_retrieval_source(str(csv))


def test_retrieval_shards_and_clip_benchmark_retrieval(tmp_path):
    shard = write_tar(
        tmp_path / "shards" / "00000.tar",
        {"a.jpg": image_bytes(1, "JPEG"), "a.txt": b"one\ntwo", "b.jpg": image_bytes(2, "JPEG")},
    )
    source = open_retrieval_source(str(shard.parent))
    assert source.kind == "shards"
    batch = collate_retrieval(list(source.make_dataset(_to_tensor)))
    assert batch["captions"] == [["one\ntwo"]]  # plain shards: the whole .txt is one caption
    assert [name for name, _ in batch["failures"]] == ["00000.tar:b"]
    assert open_retrieval_source(str(shard)).kind == "shards"

    root = make_clip_benchmark_retrieval(tmp_path / "wds_flickr_tiny", [["a", "b"], ["c"], ["d", "e", "f"]])
    source = open_retrieval_source(str(root))
    assert source.kind == "clip_benchmark" and source.name == "wds/flickr_tiny"
    dataset = source.make_dataset(_to_tensor)
    assert isinstance(dataset, WdsRetrieval)
    batch = collate_retrieval(list(dataset))
    assert batch["captions"] == [["a", "b"], ["c"], ["d", "e", "f"]]


def test_retrieval_source_errors(tmp_path):
    with pytest.raises(ClipctlError, match="no such file"):
        open_retrieval_source(str(tmp_path / "missing.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipctlError, match="holds no .tar shards"):
        open_retrieval_source(str(tmp_path / "empty"))
    with pytest.raises(ClipctlError, match="shard not found"):
        open_retrieval_source(str(tmp_path / "{00000..00002}.tar"))
    root = make_clip_benchmark_classification(tmp_path / "wds_c", ["a"], [[0]])
    with pytest.raises(ClipctlError, match="not a retrieval one"):
        open_retrieval_source(str(root))
