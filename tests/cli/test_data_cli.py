"""`clipctl data ...` wiring: exit codes, JSON output and one-line errors."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from clipctl.cli.main import main
from tests.data.image_server import serve_directory
from tests.helpers import assert_user_error


def test_synth_then_inspect_then_refuse_a_different_seed(tmp_path, capsys):
    out = tmp_path / "shapes"
    args = ["data", "synth", "--out", str(out), "--num-train", "40", "--num-heldout-per-class", "1"]
    args += ["--image-size", "24", "--samples-per-shard", "20", "--processes", "1"]
    assert main(args) == 0
    assert "synthetic shapes dataset (written)" in capsys.readouterr().out

    assert main(args) == 0
    assert "already there" in capsys.readouterr().out

    assert main(["data", "inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_samples"] == 40 and report["problems"] == []
    assert [s["sizes_json"] for s in report["shards"]] == [20, 20]

    assert main([*args, "--seed", "1"]) == 2
    assert "--overwrite" in assert_user_error(capsys.readouterr().err)


def test_pack_json_and_inspect_failing_on_a_corrupt_image(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        buf = io.BytesIO()
        Image.fromarray(np.full((6, 6, 3), 40 * i, dtype=np.uint8)).save(buf, format="PNG")
        (src / f"{i}.png").write_bytes(buf.getvalue())
        (src / f"{i}.txt").write_text(f"grey square {i}")
    assert main(["data", "pack", str(src), "--out", str(tmp_path / "out"), "--processes", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["num_written"], summary["skipped"]) == (3, [])

    assert main(["data", "inspect", str(tmp_path / "out"), "--check-images"]) == 0
    text = capsys.readouterr().out
    assert "1 shards, 3 samples" in text and "grey square 0" in text

    # Replace one image inside the shard with garbage of the same length, so only decoding can tell.
    tar_path = tmp_path / "out" / "00000.tar"
    data = bytearray(tar_path.read_bytes())
    png_at = data.find(b"\x89PNG")
    data[png_at : png_at + 40] = b"x" * 40
    tar_path.write_bytes(bytes(data))
    assert main(["data", "inspect", str(tar_path), "--check-images", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["shards"][0]["num_unreadable"] == 1
    assert "1 problem(s) found" in assert_user_error(captured.err)


def test_bad_input_gives_exit_2_and_one_line(tmp_path, capsys):
    assert main(["data", "pack", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in assert_user_error(capsys.readouterr().err)

    assert main(["data", "build", str(tmp_path / "urls.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "no such URL list" in assert_user_error(capsys.readouterr().err)

    (tmp_path / "urls.csv").write_text("link,caption\nhttp://127.0.0.1:9/a.jpg,a\n")
    assert main(["data", "build", str(tmp_path / "urls.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "no URL column 'url'" in assert_user_error(capsys.readouterr().err)

    assert main(["data", "inspect", str(tmp_path / "missing_{0..1}.tar")]) == 2
    assert "shard not found" in assert_user_error(capsys.readouterr().err)

    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num-train", "0"]) == 2
    assert "--num-train" in assert_user_error(capsys.readouterr().err)


def test_build_exits_1_with_a_summary_when_every_download_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    (tmp_path / "www").mkdir()
    with serve_directory(tmp_path / "www") as base:
        url_list = tmp_path / "urls.csv"
        url_list.write_text("url,caption\n" + "".join(f"{base}/gone_{i}.jpg,gone\n" for i in range(3)))
        code = main(
            ["data", "build", str(url_list), "--out", str(tmp_path / "shards"), "--threads", "2", "-q"]
        )
    captured = capsys.readouterr()
    assert code == 1
    assert "none of the 3 images" in assert_user_error(captured.err)
    assert "failed to download" in captured.out and "404" in captured.out
    assert json.loads((tmp_path / "shards" / "sizes.json").read_text()) == {"00000.tar": 0}


def test_inspect_accepts_a_quoted_glob(tmp_path, capsys):
    out = tmp_path / "shapes"
    args = ["data", "synth", "--out", str(out), "--num-train", "40", "--num-heldout-per-class", "1"]
    assert main([*args, "--image-size", "24", "--samples-per-shard", "20", "--processes", "1"]) == 0
    capsys.readouterr()
    assert main(["data", "inspect", str(out / "*.tar"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_samples"] == 40 and len(report["shards"]) == 2
