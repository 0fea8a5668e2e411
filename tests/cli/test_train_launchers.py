"""The README's distributed command lines work as written: each torchrun line goes through torchrun's own
argument parser (which prefix-matches options, the module's included) and reaches clipctl intact; each srun
line runs; both pass `--dry-run` with local shards in place of the README's data paths."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from torch.distributed.run import parse_args as torchrun_parse_args

from clipctl.cli.main import main
from clipctl.cli.train import build_parser
from tests.train.engine_helpers import write_colour_shards

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_launcher_lines(launcher: str) -> list[str]:
    """Every command in the README's bash blocks that starts with ``launcher``, continuation lines joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip().startswith(launcher + " "):
                lines.append(command.strip())
    return lines


def _local(argv: list[str], shards: str, logs: Path) -> list[str]:
    """The README's argv with its cluster paths (data and run folder) swapped for local ones."""
    swapped = list(argv)
    for flag, value in (("--train-data", shards), ("--logs", str(logs))):
        swapped[swapped.index(flag) + 1] = value
    return swapped


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    return write_colour_shards(tmp_path_factory.mktemp("shards"), num_shards=16, per_shard=40)


def test_readme_shows_torchrun_and_srun_lines_with_logs():
    lines = readme_launcher_lines("torchrun") + readme_launcher_lines("srun")
    assert len(lines) >= 2 and all(" --logs " in line for line in lines)


@pytest.mark.parametrize("line", readme_launcher_lines("torchrun"))
def test_readme_torchrun_line_parses_in_torchrun_and_dry_runs(line, shards, tmp_path, capsys):
    args = torchrun_parse_args(shlex.split(line)[1:])  # exits 2 on "ambiguous option: --logs ..."
    assert args.module and args.training_script == "clipctl"
    argv = _local(args.training_script_args, shards, tmp_path / "runs")
    assert main([*argv, "--dry-run"]) == 0, capsys.readouterr().err
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["logs"] == str(tmp_path / "runs") and resolved["name"] == argv[argv.index("--name") + 1]


@pytest.mark.parametrize("line", readme_launcher_lines("srun"))
def test_readme_srun_line_dry_runs(line, shards, tmp_path, capsys):
    argv = shlex.split(line)
    argv = argv[argv.index("clipctl") + 1 :]
    assert main([*_local(argv, shards, tmp_path / "runs"), "--dry-run"]) == 0, capsys.readouterr().err
    assert yaml.safe_load(capsys.readouterr().out)["logs"] == str(tmp_path / "runs")


def test_logs_is_the_only_train_flag_torchrun_takes_for_its_own():
    """Every train/distill/resume flag placed after `-m clipctl train`: only --logs needs the `--`."""
    flags = {
        o
        for cmd in ("train", "distill", "resume")
        for a in build_parser(cmd)._actions
        for o in a.option_strings
    }
    misread = []
    for flag in sorted(flags):
        try:
            parsed = torchrun_parse_args(["--nproc_per_node", "2", "-m", "clipctl", "train", flag, "1"])
            if parsed.training_script_args[-2:] != [flag, "1"]:
                misread.append(flag)
        except SystemExit:
            misread.append(flag)
    assert misread == ["--logs"]
    parsed = torchrun_parse_args(["--nproc_per_node", "2", "-m", "--", "clipctl", "train", "--logs", "x"])
    assert parsed.training_script_args == ["train", "--logs", "x"]
