"""Every command that writes refuses, with one line and exit 2, an output that can never be written: a path
under a file ("afile/out.json") or a file where a folder belongs. The file in the way is left untouched."""

from __future__ import annotations

import pytest

from clipctl.cli.main import main
from tests.eval.eval_data import make_image_folder, tiny_model_files
from tests.helpers import assert_user_error
from tests.train.engine_helpers import write_colour_shards

IN_THE_WAY = b"a file where a folder should be"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("inputs")
    config, weights = tiny_model_files(root / "model")
    folder = make_image_folder(root / "pets", {"cat": 2, "dog": 2})
    names = root / "names.txt"
    names.write_text("cat\ndog\n")
    src = root / "pairs"
    src.mkdir()
    (src / "a.png").write_bytes(
        (folder / "cat" / sorted(p.name for p in (folder / "cat").iterdir())[0]).read_bytes()
    )
    (src / "a.txt").write_text("a cat")
    urls = root / "urls.csv"
    urls.write_text("url,caption\nhttp://127.0.0.1:9/a.jpg,a cat\n")  # nothing is fetched: refused first
    return {
        "urls": str(urls),
        "config": config,
        "weights": weights,
        "images": str(folder / "cat"),
        "classes": str(folder),
        "names": str(names),
        "pairs": str(src),
        "shards": write_colour_shards(root / "shards", num_shards=2, per_shard=16),
    }


# {out} is a path below a regular file; each command's own inputs come from the fixture.
COMMANDS = {
    "embed": "embed {images} --out {out}/e.parquet --model {config} --pretrained {weights} --workers 0 -q",
    "embed-clip-retrieval": "embed {images} --out {out}/idx --format clip-retrieval --model {config} "
    "--pretrained {weights} --workers 0 -q",
    "embed-text": "embed --text {names} --out {out}/t.parquet --model {config} --pretrained {weights} -q",
    "zeroshot": "zeroshot --model {config} --pretrained {weights} --data {classes} --classnames {names} "
    "--out {out}/z.json --workers 0 --quiet",
    "eval-retrieval": "eval retrieval --model {config} --pretrained {weights} --data {shards} "
    "--out {out}/r.json --workers 0 --quiet",
    "export-file": "export --model {config} --pretrained {weights} --out {out}/w.safetensors",
    "export-folder": "export --model {config} --pretrained {weights} --out {out}/deploy",
    "push-to-hub": "push-to-hub --model {config} --pretrained {weights} --local-dir {out}/hub",
    "data-synth": "data synth --out {out}/s --num-train 8 --num-heldout-per-class 1 --image-size 16",
    "data-pack": "data pack {pairs} --out {out}/p --processes 1",
    "data-build": "data build {urls} --out {out}/b --processes 1",
    "demo": "demo --quick --out {out}/demo",
    "train": "train --model {config} --train-data {shards} --logs {out}/runs --name x --dry-run",
    "completions": "completions --write {out}/c",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("depth", ["child", "grandchild"])
def test_output_below_a_file_is_one_line_and_exit_2(command, depth, inputs, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_bytes(IN_THE_WAY)
    out = blocker if depth == "child" else blocker / "sub"
    argv = COMMANDS[command].format(out=out, **inputs).split()
    assert main(argv) == 2
    assert_user_error(capsys.readouterr().err, f"{blocker} is a file, not a folder")
    assert blocker.read_bytes() == IN_THE_WAY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("data synth --out {out} --num-train 8", "exists and is a file, not a folder"),
        ("completions --write {out}", "exists and is a file, not a folder"),
        ("push-to-hub --model {config} --pretrained {weights} --local-dir {out}", "exists and is a file"),
        ("train --model {config} --train-data {shards} --logs {dir} --name afile --dry-run", "is a file"),
    ],
)
def test_a_file_where_an_output_folder_belongs_is_one_line(argv, message, inputs, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_bytes(IN_THE_WAY)
    assert main(argv.format(out=blocker, dir=tmp_path, **inputs).split()) == 2
    assert_user_error(capsys.readouterr().err, message)
    assert blocker.read_bytes() == IN_THE_WAY
