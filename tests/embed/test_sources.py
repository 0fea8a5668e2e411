"""What `clipctl embed` reads: folders, list files, shards, caption files, and the one-line errors for bad ones."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from clipctl.embed.sources import open_image_source, read_caption_lines, shard_sample_key
from clipctl.errors import ClipctlError


def test_folder_is_searched_recursively_for_image_extensions_only(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in [
        "x.jpg",
        "a/y.PNG",
        "a/b/z.webp",
        "a/b/notes.txt",
        "a/cap.json",
        ".hidden/h.jpg",
        "a/.dot.jpg",
    ]:
        (tmp_path / name).write_bytes(b"")
    source = open_image_source(tmp_path)
    assert source.kind == "folder" and source.key_column == "path"
    assert [item.key for item in source.items] == ["a/b/z.webp", "a/y.PNG", "x.jpg"]
    assert source.items[0].location == str(tmp_path / "a" / "b" / "z.webp")
    assert source.count_hint() == 3


def test_list_file_paths_are_relative_to_the_list_and_deduplicated(tmp_path):
    (tmp_path / "imgs").mkdir()
    listing = tmp_path / "imgs" / "list.txt"
    listing.write_text("# my images\none.jpg\n\nsub/two.png\none.jpg\n/abs/three.jpg\n")
    source = open_image_source(listing)
    assert source.kind == "list"
    assert [(i.key, i.location) for i in source.items] == [
        ("one.jpg", str(tmp_path / "imgs" / "one.jpg")),
        ("sub/two.png", str(tmp_path / "imgs" / "sub" / "two.png")),
        ("/abs/three.jpg", "/abs/three.jpg"),
    ]


def _tar(path, names):
    with tarfile.open(path, "w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))


def test_shards_from_brace_pattern_single_tar_or_folder_with_sizes_json(tmp_path):
    for i in range(3):
        _tar(tmp_path / f"{i:05d}.tar", [f"{i}.jpg"])
    source = open_image_source(str(tmp_path / "{00000..00002}.tar"))
    assert source.kind == "shards" and source.key_column == "key" and len(source.shards) == 3
    assert source.count_hint() is None
    (tmp_path / "sizes.json").write_text(json.dumps({f"{i:05d}.tar": 5 for i in range(3)}))
    assert open_image_source(tmp_path).count_hint() == 15
    assert open_image_source(tmp_path / "00001.tar").shards == [str(tmp_path / "00001.tar")]
    with pytest.raises(ClipctlError, match=r"00003.tar does not exist \(and 1 more\)"):
        open_image_source(str(tmp_path / "{00002..00004}.tar"))


def test_shard_sample_key_is_the_name_before_the_first_dot():
    assert shard_sample_key("000123.jpg") == ("000123", ".jpg")
    assert shard_sample_key("dir/abc.seg.JPEG") == ("dir/abc", ".seg.jpeg")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "no images found in"),
        (lambda p: p / "missing", "no such file or folder"),
        (lambda p: (p / "empty.txt").write_text("\n# nothing\n") and p / "empty.txt", "names no images"),
        (lambda p: (p / "bin.txt").write_bytes(b"\xff\xfe\x00\x80") and p / "bin.txt", "not a text list"),
    ],
)
def test_bad_sources_are_one_line_errors(tmp_path, make, message):
    with pytest.raises(ClipctlError, match=message):
        open_image_source(make(tmp_path))


def test_caption_lines_keep_their_line_numbers(tmp_path):
    path = tmp_path / "caps.txt"
    path.write_text("a dog\n\n  a cat  \n")
    assert read_caption_lines(path) == [(0, "a dog"), (2, "a cat")]
    path.write_text("\n\n")
    with pytest.raises(ClipctlError, match="holds no captions"):
        read_caption_lines(path)
