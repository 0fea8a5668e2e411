"""`clipctl train|resume|distill|recipes`: flag wiring, --dry-run of every recipe and of the model-card
commands, and one-line errors (exit 2) for bad input before any process group or model exists."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from clipctl.cli.main import main
from clipctl.config.recipes import list_recipes
from tests.helpers import assert_user_error
from tests.train.engine_helpers import write_colour_shards, write_tiny_model

EXPECTED_RECIPES = {
    "convnext_base_w_laion2b",
    "convnext_base_w_laion2b_augreg",
    "convnext_base_w_320_laion_aesthetic",
    "convnext_large_d_laion2b_augreg",
    "convnext_large_d_320_laion2b_ft",
    "vit_b_32_laion400m",
    "coca_vit_l_14_mscoco_ft",
    "roberta_vit_b_32_cc3m",
    "tiny_cpu",
}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    return write_colour_shards(tmp_path_factory.mktemp("shards"), num_shards=16, per_shard=40)


@pytest.fixture
def no_engine(monkeypatch):
    """Fail the test if anything past validation starts: a process group, a model, the trainer."""
    import torch.distributed

    import clipctl.api
    from clipctl.train import trainer

    def forbidden(*args, **kwargs):
        raise AssertionError("built something before the input was validated")

    monkeypatch.setattr(torch.distributed, "init_process_group", forbidden)
    monkeypatch.setattr(clipctl.api, "create_model", forbidden)
    monkeypatch.setattr(trainer.Trainer, "setup", forbidden)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_recipes_list_names_every_published_run(capsys):
    assert EXPECTED_RECIPES <= set(list_recipes())
    code, out, _ = run_cli(["recipes", "list"], capsys)
    assert code == 0 and "tiny_cpu" in out


def test_recipes_show_prints_the_yaml(capsys):
    code, out, _ = run_cli(["recipes", "show", "vit_b_32_laion400m"], capsys)
    assert code == 0
    assert yaml.safe_load(out)["args"]["model"] == "ViT-B-32"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("args: {model: ViT-B-32\n  batch_size: [", "is not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("args:\n  batch_sise: 8\n", "unknown recipe key 'batch_sise'"),
        ("args:\n  batch_size: eight\n", "batch_size must be an integer"),
        ("args:\n  epochs: 0\n", "--epochs must be at least 1"),
        ("args:\n  precision: fp64\n", "unknown precision 'fp64'"),
        ("descripton: typo\nargs: {}\n", "unknown top-level key 'descripton'"),
    ],
)
def test_recipes_show_checks_a_file_as_train_recipe_does(text, message, tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    for argv in (["recipes", "show", str(path)], ["train", "--recipe", str(path), "--dry-run"]):
        code, out, err = run_cli(argv, capsys)
        assert code == 2 and not out
        assert_user_error(err, message)


def _recipe_extra(name: str, shards: str, tmp_path: Path) -> list[str]:
    extra = ["--train-data", shards, "--logs", str(tmp_path / "runs"), "--name", f"dry-{name}"]
    if name == "coca_vit_l_14_mscoco_ft":
        csv = tmp_path / "coco.tsv"
        (tmp_path / "a.png").write_bytes(b"")
        csv.write_text(
            "filepath\ttitle\n" + "".join(f"{tmp_path / 'a.png'}\ta caption\n" for _ in range(200))
        )
        extra = ["--train-data", str(csv), *extra[2:]]
    if name == "convnext_large_d_320_laion2b_ft":
        weights = tmp_path / "epoch_195.pt"
        weights.write_bytes(b"not read by a dry run")
        extra += ["--pretrained", str(weights)]
    return extra


@pytest.mark.parametrize("name", sorted(EXPECTED_RECIPES | {"unireplknet_l_laion5b"}))
def test_every_recipe_passes_dry_run_with_local_data(name, shards, tmp_path, capsys, no_engine):
    code, shown, err = run_cli(["recipes", "show", name], capsys)
    assert code == 0, err
    assert yaml.safe_load(shown)["args"]
    args = ["train", "--recipe", name, *_recipe_extra(name, shards, tmp_path), "--workers", "2", "--dry-run"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert resolved["recipe"] == name
    assert resolved["train_data"] is not None
    assert not (tmp_path / "runs").exists(), "--dry-run must not create the run folder"


MODEL_CARD_COMMANDS = {
    # laion/CLIP-convnext_base_w-laion2B-s13B-b82K, training command (data path swapped for local shards)
    "convnext_base_w": """--save-frequency 1 --name "convnext_256" --resume 'latest' --train-data="{data}"
        --train-num-samples 203666042 --dataset-type webdataset --precision amp_bfloat16 --warmup 10000
        --batch-size=512 --epochs=64 --dataset-resampled --clip-grad-norm 5.0 --lr 1e-3 --workers=6
        --model "convnext_base_w" --seed 0 --ddp-static-graph --local-loss --gather-with-grad --grad-checkpointing""",
    # laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft: fine-tune from the 256 px run
    "convnext_large_d_320_ft": """--save-frequency 1 --name "convnext_large_320" --pretrained "{weights}"
        --train-data="{data}" --train-num-samples 135646078 --dataset-type webdataset --precision amp_bfloat16
        --beta2 0.98 --warmup 2000 --batch-size=256 --epochs=12 --dataset-resampled --aug-cfg use_timm=True
        scale='(0.5, 1.0)' re_prob=0.4 --clip-grad-norm 5.0 --lr 5e-5 --workers=6 --model "convnext_large_d_320"
        --seed 0 --ddp-static-graph --local-loss --gather-with-grad --grad-checkpointing""",
    # OpenCLIP README, multi-node SLURM example
    "vit_b_32_slurm": """--save-frequency 1 --report-to tensorboard --train-data="{data}" --warmup 2000
        --batch-size=256 --epochs=32 --workers=8 --model ViT-B-32 --name "ViT-B-32-Vanilla" --seed 0
        --local-loss --gather-with-grad""",
    # OpenCLIP README, pretrained text encoder
    "roberta_cc3m": """--train-data="{data}" --train-num-samples 3000000 --val-data="{data}" --val-num-samples 10000
        --dataset-type webdataset --batch-size 256 --warmup 2000 --epochs 10 --lr 5e-4 --precision amp --workers 6
        --model "roberta-ViT-B-32" --lock-text --lock-text-unlocked-layers 10 --name "10_unfrozen"
        --report-to "tensorboard" """,
}


@pytest.mark.parametrize("card", sorted(MODEL_CARD_COMMANDS))
def test_model_card_commands_pass_dry_run_unchanged(card, shards, tmp_path, capsys, no_engine):
    weights = tmp_path / "convnext_large_d_256.pt"
    weights.write_bytes(b"x")
    argv = shlex.split(MODEL_CARD_COMMANDS[card].format(data=shards, weights=weights))
    code, out, err = run_cli(["train", *argv, "--logs", str(tmp_path / "logs"), "--dry-run"], capsys)
    assert code == 0, err
    resolved = yaml.safe_load(out)
    if card == "convnext_large_d_320_ft":
        assert resolved["aug_cfg"] == {"use_timm": True, "scale": [0.5, 1.0], "re_prob": 0.4}
        assert resolved["grad_clip_norm"] == 5.0


def test_flags_override_recipe_and_set_overrides_flags(shards, tmp_path, capsys, no_engine):
    args = [
        "train",
        "--recipe",
        "tiny_cpu",
        "--train-data",
        shards,
        "--batch-size",
        "8",
        "--set",
        "batch_size=4",
    ]
    args += ["--set", "lr=2e-3", "--logs", str(tmp_path), "--dry-run"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert resolved["batch_size"] == 4 and resolved["lr"] == 2e-3 and resolved["epochs"] == 2


def test_default_optimizer_params_follow_the_model_family(shards, tmp_path, capsys, no_engine):
    base = ["train", "--train-data", shards, "--workers", "1", "--logs", str(tmp_path), "--dry-run"]
    _, out, _ = run_cli([*base, "--model", "ViT-B-32"], capsys)
    vit = yaml.safe_load(out)
    _, out, _ = run_cli([*base, "--model", "RN50"], capsys)
    rn = yaml.safe_load(out)
    assert (vit["lr"], vit["beta2"], vit["eps"]) == (5e-4, 0.98, 1e-6)
    assert (rn["beta2"], rn["eps"]) == (0.999, 1e-8)


def test_distill_maps_teacher_flags(shards, tmp_path, capsys, no_engine):
    args = ["distill", "--model", "ViT-B-32", "--teacher", "ViT-B-16", "--teacher-pretrained", "openai"]
    args += ["--train-data", shards, "--workers", "1", "--logs", str(tmp_path), "--dry-run"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert resolved["distill_model"] == "ViT-B-16" and resolved["distill_pretrained"] == "openai"


def _bad_inputs(shards: str, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    csv = tmp_path / "data.csv"
    csv.write_text("image,caption\nx.png,hello\n")
    existing = tmp_path / "runs" / "taken"
    existing.mkdir(parents=True)
    (existing / "out.log").write_text("")
    bad_recipe = tmp_path / "bad.yaml"
    bad_recipe.write_text("description: x\nargs:\n  batch_sise: 4\n")
    comma = tmp_path / "comma.csv"
    comma.write_text("filepath,title\nx.png,hello\n")
    unsized = write_colour_shards(tmp_path / "unsized", num_shards=2, per_shard=4, sizes=False)
    folders = _class_folders(tmp_path / "classes")
    one_name = tmp_path / "one_name.txt"
    one_name.write_text("red\n")
    ok = ["--workers", "1", "--logs", str(tmp_path / "runs")]
    return {
        "missing shards": (["--train-data", str(tmp_path / "nope/{00000..00003}.tar"), *ok], "not found"),
        "spec expanding to nothing": (["--train-data", str(empty / "{}.tar"), *ok], ""),
        "csv without the columns": (["--train-data", str(csv), "--csv-separator", ",", *ok], "column"),
        "batch larger than data": (["--train-data", shards, "--batch-size", "4096", *ok], "batch"),
        "unknown recipe key": (["--recipe", str(bad_recipe), "--train-data", shards, *ok], "batch_sise"),
        "unknown recipe": (["--recipe", "convnext_base_w_laion2c", "--train-data", shards, *ok], "recipe"),
        "unknown --set key": (["--train-data", shards, "--set", "lr_max=1", *ok], "lr_max"),
        "run name exists": (["--train-data", shards, "--name", "taken", *ok], "clipctl resume"),
        "horovod": (["--train-data", shards, "--horovod", *ok], "torchrun"),
        "unknown precision": (["--train-data", shards, "--precision", "fp8", *ok], "precision"),
        "missing resume file": (["--train-data", shards, "--resume", str(tmp_path / "x.pt"), *ok], "resume"),
        "bnb without bitsandbytes": (
            ["--train-data", shards, "--use-bnb-linear", "SwitchBackLinear", *ok],
            "bitsandbytes",
        ),
        "unknown model": (["--train-data", shards, "--model", "ViT-B-33", *ok], "ViT-B-33"),
        "half a teacher": (["--train-data", shards, "--distill-model", "ViT-B-32", *ok], "distill"),
        "synthetic without size": (["--dataset-type", "synthetic", *ok], "train-num-samples"),
        "csv with another separator": (["--train-data", str(comma), *ok], "separator"),
        "shards without sizes.json": (["--train-data", unsized, *ok], "--train-num-samples"),
        "label column without --multi-positive": (
            ["--train-data", str(comma), "--csv-separator", ",", "--csv-label-key", "title", *ok],
            "--multi-positive",
        ),
        "label column on shards": (
            ["--train-data", shards, "--multi-positive", "--csv-label-key", "label", *ok],
            "--csv-label-key",
        ),
        "templates without class folders": (
            ["--train-data", shards, "--templates", "simple", *ok],
            "imagefolder",
        ),
        "class names not matching the folders": (
            ["--train-data", folders, "--dataset-type", "imagefolder", "--classnames", str(one_name), *ok],
            "class folders",
        ),
    }


BAD_CASES = [
    "missing shards",
    "spec expanding to nothing",
    "csv without the columns",
    "batch larger than data",
    "unknown recipe key",
    "unknown recipe",
    "unknown --set key",
    "run name exists",
    "horovod",
    "unknown precision",
    "missing resume file",
    "bnb without bitsandbytes",
    "unknown model",
    "half a teacher",
    "synthetic without size",
    "csv with another separator",
    "shards without sizes.json",
    "label column without --multi-positive",
    "label column on shards",
    "templates without class folders",
    "class names not matching the folders",
]


def _class_folders(root: Path) -> str:
    from PIL import Image

    for colour, rgb in {"red": (200, 0, 0), "blue": (0, 0, 200)}.items():
        (root / colour).mkdir(parents=True)
        for i in range(40):
            Image.new("RGB", (8, 8), rgb).save(root / colour / f"{i}.png")
    return str(root)


def test_imagefolder_flags_reach_the_run_config(tmp_path, capsys, no_engine):
    names = tmp_path / "names.txt"
    names.write_text("blue paint\nred paint\n")
    args = ["train", "--train-data", _class_folders(tmp_path / "classes"), "--dataset-type", "imagefolder"]
    args += ["--templates", "simple", "--classnames", str(names), "--multi-positive", "--batch-size", "16"]
    code, out, err = run_cli([*args, "--workers", "1", "--logs", str(tmp_path / "runs"), "--dry-run"], capsys)
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert resolved["dataset_type"] == "imagefolder" and resolved["templates"] == "simple"
    assert resolved["classnames"] == str(names) and resolved["multi_positive"] is True


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_exit_2_before_anything_is_built(case, shards, tmp_path, capsys, no_engine):
    import importlib.util

    if case == "bnb without bitsandbytes" and importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed")
    args, needle = _bad_inputs(shards, tmp_path)[case]
    code, out, err = run_cli(["train", *args], capsys)
    assert code == 2, (out, err)
    line = assert_user_error(err)
    assert needle.lower() in line.lower(), line


def test_resume_needs_a_run_folder(tmp_path, capsys):
    code, _, err = run_cli(["resume", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "not a run folder" in err


def test_tiny_json_model_dry_run_prints_full_config(tmp_path, shards, capsys, no_engine):
    model = write_tiny_model(tmp_path)
    code, out, err = run_cli(
        ["train", "--model", model, "--train-data", shards, "--dry-run", "--workers", "1"], capsys
    )
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert set(resolved) >= {"train_data", "model", "lr", "precision", "save_every_n_steps", "name"}


@pytest.mark.parametrize(
    "flags",
    [["--pretrained", "none"], ["--pretrained", "None"], ["--save-frequency", "0"]],
    ids=["pretrained-none", "pretrained-None", "save-frequency-0"],
)
def test_openclip_flag_values_are_accepted(flags, shards, tmp_path, capsys, no_engine):
    args = ["train", "--recipe", "tiny_cpu", "--train-data", shards, *flags]
    code, out, err = run_cli([*args, "--logs", str(tmp_path), "--dry-run"], capsys)
    assert code == 0, err
    assert yaml.safe_load(out)[flags[0][2:].replace("-", "_")] in ("none", "None", 0)


def test_train_data_accepts_a_quoted_glob(shards, tmp_path, capsys, no_engine):
    folder = shards.split("{")[0]
    args = ["train", "--recipe", "tiny_cpu", "--train-data", folder + "*.tar", "--workers", "2"]
    code, out, err = run_cli([*args, "--logs", str(tmp_path), "--dry-run"], capsys)
    assert code == 0, err
    assert yaml.safe_load(out)["train_data"] == folder + "*.tar"
