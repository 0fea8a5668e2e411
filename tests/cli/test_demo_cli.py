"""`clipctl demo`: flags reach the job, the report prints, bad folders fail with one line."""

from clipctl.cli.main import main
from clipctl.demo.pipeline import DemoReport, LossSummary


def _fake_report(out_dir, **kwargs):
    return DemoReport(
        out_dir=str(out_dir),
        quick=kwargs["quick"],
        seed=kwargs["seed"],
        recipe="demo_quick",
        model="tiny-RN-demo",
        data_dir=f"{out_dir}/data",
        num_train=2048,
        num_heldout=128,
        num_classes=32,
        run_dir=f"{out_dir}/runs/demo",
        checkpoint=f"{out_dir}/runs/demo/checkpoints/epoch_4.pt",
        results_json=f"{out_dir}/zeroshot.json",
        embeddings_parquet=f"{out_dir}/heldout_embeddings.parquet",
        loss_curve_png=f"{out_dir}/runs/demo/loss_curve.png",
        predictions_png=f"{out_dir}/runs/demo/predictions.png",
        samples_per_second=321.0,
        loss=LossSummary(first=4.2, last=1.1, min=1.05, min_step=120, steps=128),
        top1=0.5,
        top5=0.9,
        chance_top1=1 / 32,
        chance_top5=5 / 32,
        num_embedded=128,
        data_reused=False,
        seconds={"data": 3.0, "train": 60.0, "zeroshot": 2.0, "embed": 2.0, "search": 1.0, "total": 71.0},
        search={
            "index_dir": f"{out_dir}/index",
            "query": "a red circle",
            "top": [{"rank": 1, "score": 0.31, "key": "red_circle/0003.png"}],
            "k": 4,
            "precision": 0.42,
            "bound": 0.27,
            "per_class": {},
        },
    )


def test_demo_passes_its_flags_and_prints_the_report(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run_demo(out_dir, **kwargs):
        calls.append((out_dir, kwargs))
        return _fake_report(out_dir, **kwargs)

    monkeypatch.setattr("clipctl.demo.pipeline.run_demo", fake_run_demo)
    code = main(["demo", "--out", str(tmp_path / "d"), "--quick", "--seed", "3", "--overwrite"])
    out = capsys.readouterr().out
    assert code == 0
    ((out_dir, kwargs),) = calls
    assert str(out_dir) == str(tmp_path / "d")
    assert kwargs["quick"] is True and kwargs["seed"] == 3 and kwargs["overwrite"] is True
    for expected in (
        "50.0%",
        "chance 3.1%",
        "16x chance",
        "90.0%",
        "321 samples/s",
        "first 4.200 -> last 1.100",
        "min 1.050",
        "zeroshot.json",
        "heldout_embeddings.parquet",
        "runs/demo",
        '"a red circle" -> red_circle/0003.png (0.31)',
        "precision@4      42.0% mean over one text query per class (bound from zero-shot top-1: 27.0%)",
        f"clipctl serve {tmp_path / 'd' / 'index'}",
    ):
        assert expected in out, expected


def test_demo_default_folder_is_demo(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(
        "clipctl.demo.pipeline.run_demo",
        lambda out_dir, **kw: seen.append(out_dir) or _fake_report(out_dir, **kw),
    )
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert str(seen[0]) == "demo"


def test_demo_refuses_a_folder_with_other_files_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code = main(["demo", "--out", str(tmp_path), "--quick"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("clipctl: error: refusing to use") and "notes.txt" in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_demo_refuses_a_different_run_unless_overwrite(tmp_path, capsys):
    import json

    (tmp_path / "demo.json").write_text(json.dumps({"parameters": {"seed": 99}, "status": "done"}))
    code = main(["demo", "--out", str(tmp_path), "--quick"])
    err = capsys.readouterr().err
    assert code == 2 and "different demo run" in err and "--overwrite" in err
