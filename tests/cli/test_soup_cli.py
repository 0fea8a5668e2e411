"""`clipctl soup` and `clipctl wise-ft` wiring: what is printed, and one line plus a non-zero exit for bad input."""

from __future__ import annotations

import json

import pytest

from clipctl.cli.main import main
from tests.soup.soup_data import heldout_set, random_checkpoint, tiny_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("soupcli")
    config = tiny_config(folder)
    for seed in range(2):
        random_checkpoint(config, folder / f"m{seed}.pt", seed=seed)
    random_checkpoint(tiny_config(folder, width=48), folder / "wide.pt", seed=0)
    data, classnames = heldout_set(folder / "synth")
    return folder, config, data, classnames


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("clipctl: error: ")
    return lines[0]


def test_uniform_and_greedy_soups_print_what_they_wrote(setup, tmp_path, capsys):
    folder, config, data, classnames = setup
    m0, m1 = str(folder / "m0.pt"), str(folder / "m1.pt")
    assert main(["soup", m0, m1, "--out", str(tmp_path / "u.pt")]) == 0
    assert "wrote a uniform soup of 2 checkpoint(s)" in capsys.readouterr().out
    args = ["soup", m0, m1, "--greedy", "--model", config, "--data", data, "--classnames", classnames]
    args += ["--out", str(tmp_path / "g.pt"), "--results", str(tmp_path / "g.json"), "-j", "0", "-q"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "greedy soup:" in printed and "kept" in printed
    assert json.loads((tmp_path / "g.json").read_text())["task"] == "greedy_soup"


def test_wise_ft_sweep_prints_each_alpha(setup, tmp_path, capsys):
    folder, config, data, classnames = setup
    args = ["wise-ft", "--zeroshot", str(folder / "m0.pt"), "--finetuned", str(folder / "m1.pt")]
    args += ["--alpha", "0,0.5,1", "--model", config, "--data", data, "--classnames", classnames]
    args += ["--out", str(tmp_path / "w.pt"), "--results", str(tmp_path / "r_{alpha}.json"), "-j", "0", "-q"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "(kept)" in printed and "wrote the alpha=" in printed
    assert sorted(p.name for p in tmp_path.glob("r_*.json")) == ["r_0.5.json", "r_0.json", "r_1.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["soup", "{f}/nope.pt", "--out", "{t}/s.pt"], "checkpoint {f}/nope.pt does not exist"),
        (["soup", "{f}/m0.pt", "--out", "{t}/s.ckpt"], "unknown weights format '.ckpt'"),
        (
            ["soup", "{f}/m0.pt", "{f}/m1.pt", "--weights", "0.5,0.6", "--out", "{t}/s.pt"],
            "sum to 1.1, not 1",
        ),
        (["soup", "{f}/m0.pt", "{f}/wide.pt", "--out", "{t}/s.pt"], "first differing key 'visual."),
        (
            ["soup", "{f}/m0.pt", "--greedy", "--model", "{c}", "--data", "{t}/empty", "--out", "{t}/s.pt"],
            "has no class sub-folders",
        ),
        (
            [
                "wise-ft",
                "--zeroshot",
                "{f}/m0.pt",
                "--finetuned",
                "{f}/m1.pt",
                "--alpha",
                "1.2",
                "--out",
                "{t}/w.pt",
            ],
            "--alpha 1.2 is out of range",
        ),
        (
            ["wise-ft", "--zeroshot", "{f}/m0.pt", "--finetuned", "{f}/wide.pt", "--out", "{t}/w.pt"],
            "first differing key",
        ),
        (
            [
                "wise-ft",
                "--zeroshot",
                "{f}/m0.pt",
                "--finetuned",
                "{f}/m1.pt",
                "--alpha",
                "0,1",
                "--out",
                "{t}/w.pt",
            ],
            "need --data VAL",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(setup, tmp_path, capsys, args, message):
    folder, config, _, _ = setup
    (tmp_path / "empty").mkdir()
    fill = {"f": str(folder), "t": str(tmp_path), "c": config}
    code = main([a.format(**fill) for a in args])
    assert code != 0
    line = _one_error_line(capsys.readouterr().err)
    assert message.format(**fill) in line
    assert not (tmp_path / "s.pt").exists() and not (tmp_path / "w.pt").exists()
