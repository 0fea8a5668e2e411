import json

import open_clip

from clipctl.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_filters_by_glob(capsys):
    code, out, _ = run(capsys, "models", "list", "--filter", "convnext_large*", "--json")
    assert code == 0
    assert json.loads(out) == [
        "convnext_large_d",
        "convnext_large_d-quickgelu",
        "convnext_large_d_320",
        "convnext_large_d_320-quickgelu",
    ]


def test_list_pretrained_shows_tags_and_hub_repos(capsys):
    code, out, _ = run(capsys, "models", "list", "--pretrained", "--filter", "ViT-H-14", "--json")
    rows = json.loads(out)
    assert code == 0
    assert {
        "model": "ViT-H-14",
        "pretrained": "laion2b_s32b_b79k",
        "hf_hub_id": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    } in rows


def test_show_counts_parameters_like_openclip(capsys):
    code, out, _ = run(capsys, "models", "show", "ViT-B-32", "--json")
    assert code == 0
    shown = json.loads(out)
    reference = open_clip.create_model("ViT-B-32", device="meta")
    assert shown["stats"]["params_total"] == sum(p.numel() for p in reference.parameters())
    assert shown["stats"]["params_visual"] == sum(p.numel() for p in reference.visual.parameters())
    # 2 FLOPs per multiply-add: B/32 at 224 is 4.4 G multiply-adds (the "GFLOPs" of OpenCLIP's table), 8.8 GFLOPs
    assert 8.0 < shown["stats"]["image_gflops"] < 9.6
    assert "laion2b_s34b_b79k" in shown["pretrained"]


def test_show_renders_tables(capsys):
    code, out, _ = run(capsys, "models", "show", "convnext_base_w")
    assert code == 0
    assert "parameters" in out and "laion2b_s13b_b82k" in out and "image GFLOPs @ 256x256" in out


def test_unknown_model_is_one_line_exit_2_with_suggestions(capsys):
    code, out, err = run(capsys, "models", "show", "ViT-B-31")
    assert code == 2
    assert err.count("\n") == 1 and "ViT-B-32" in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys, "models", "list", "--no-such-flag")
    assert code == 2 and "no-such-flag" in err


def test_python_m_clipctl_help_runs():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "clipctl", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "models" in result.stdout
