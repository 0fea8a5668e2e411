"""`clipctl index`, `clipctl search` and `clipctl serve` wiring: summaries, tables, JSON, exit codes and
one-line errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from clipctl.cli.main import main
from tests.helpers import assert_user_error
from tests.search.search_data import embed_folder, shape_images, tiny_weights


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("search-cli")
    weights = tiny_weights(root)
    shape_images(root / "images", per_class=3)
    return root, embed_folder(root / "images", root / "emb.parquet", weights)


def test_index_then_search_as_a_table_and_as_json(embedded, tmp_path, capsys):
    root, parquet = embedded
    index = tmp_path / "idx"
    assert main(["index", str(parquet), "--out", str(index), "-q"]) == 0
    text = capsys.readouterr().out
    assert "indexed 24 vectors" in text and "exact search" in text and "memory-mapped" in text

    assert main(["search", str(index), "--text", "a red circle", "-k", "3"]) == 0
    table = capsys.readouterr().out
    assert "rank" in table and "score" in table and str(root / "images") in table.replace("\n", "")

    image = next((root / "images").rglob("*.png"))
    assert main(["search", str(index), "--image", str(image), "-k", "2", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["query"] == {"image": str(image)} and len(answer["results"]) == 2
    assert answer["results"][0]["file"] == str(image.resolve()) and answer["results"][0]["rank"] == 1


def test_append_and_approximate_summaries(embedded, tmp_path, capsys):
    _, parquet = embedded
    index = tmp_path / "idx"
    args = ["index", str(parquet), "--out", str(index), "-q", "--exact-below", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "approximate: IVF" in out and "expected recall@10" in out
    assert main([*args, "--append"]) == 0
    out = capsys.readouterr().out
    assert "added 0 vectors" in out and "(24 already in it)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["index", "{parquet}", "--out", "{idx}"], "already holds an index; pass --append"),
        (["index", "{parquet}", "--out", "{new}", "--append"], "no such index folder"),
        (["index", "{parquet}", "--out", "{new}", "--append", "--overwrite"], "pick one"),
        (
            ["index", "{parquet}", "--out", "{new}", "--max-index-memory", "lots"],
            "cannot read memory size 'lots'",
        ),
        (["index", "{parquet}", "--out", "{new}", "--modality", "audio"], "--modality must be image or text"),
        (["index", "{missing}", "--out", "{new}"], "no such file or folder"),
        (["search", "{idx}"], "give one query: --text TEXT or --image PATH"),
        (["search", "{idx}", "--text", "x", "-k", "0"], "-k must be at least 1"),
        (
            ["search", "{idx}", "--text", "x", "--model", "tiny-RN-demo"],
            "--model tiny-RN-demo is another model",
        ),
        (["search", "{idx}", "--image", "{missing}"], "cannot read"),
        (["search", "{new}", "--text", "x"], "no such index folder"),
        (["serve", "{idx}", "--port", "0"], "--port must be between 1 and 65535"),
        (["serve", "{new}"], "no such index folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(embedded, tmp_path, capsys, args, message):
    _, parquet = embedded
    paths = {
        "parquet": parquet,
        "idx": tmp_path / "idx",
        "new": tmp_path / "new",
        "missing": tmp_path / "nope",
    }
    assert main(["index", str(parquet), "--out", str(paths["idx"]), "-q"]) == 0
    capsys.readouterr()
    assert main([a.format(**paths) for a in args]) == 2
    assert_user_error(capsys.readouterr().err, message)


def test_serve_answers_on_localhost_until_stopped(embedded, tmp_path):
    _, parquet = embedded
    assert main(["index", str(parquet), "--out", str(tmp_path / "idx"), "-q"]) == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "clipctl", "serve", str(tmp_path / "idx"), "--port", str(port)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        answer = None
        deadline = time.monotonic() + 120
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/api/search?text=a+red+circle&k=2"
                answer = json.loads(urllib.request.urlopen(url, timeout=5).read())
            except OSError:
                time.sleep(0.2)
        assert answer is not None, server.stderr.read() if server.poll() is not None else "no answer"
        assert len(answer["results"]) == 2
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert f"open http://127.0.0.1:{port}/" in stderr and "serving idx (24 image rows, exact)" in stderr
