"""Sharded (``--fsdp``) runs that lose a rank: the job stops soon with one line, ``clipctl resume`` and
``torchrun --max-restarts`` continue from the newest sharded checkpoint to the uninterrupted weights, a
checkpoint written by two ranks resumes in one process, and ``clipctl export`` turns it into ordinary weights.

Data: 4 shards of 32 samples, batch 16 per rank: 4 steps per epoch with two ranks, 2 epochs; checkpoints at
step 3, 6 and the epoch ends (written in the background in the uninterrupted run). Rank 1 is killed just
before step 7, so the newest checkpoint is step_6 (epoch 1, batch 2)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clipctl.checkpoint import read_sharded_state_dict
from clipctl.train.checkpointing import find_latest_checkpoint, read_info
from tests.train.engine_helpers import (
    CLIPCTL,
    free_port,
    launch_env,
    torchrun,
    write_colour_shards,
    write_tiny_model,
)

KILLER = str(Path(__file__).with_name("kill_worker.py"))
pytestmark = pytest.mark.slow


def _weights(run: Path, name: str = "epoch_2") -> dict[str, torch.Tensor]:
    return read_sharded_state_dict(run / "checkpoints" / name)


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, worst


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    root = tmp_path_factory.mktemp("fsdp-resume")
    shards = write_colour_shards(root / "shards", num_shards=4, per_shard=32)
    logs = root / "runs"
    args = ["train", "--model", write_tiny_model(root), "--train-data", shards, "--batch-size", "16"]
    args += ["--epochs", "2", "--workers", "1", "--lr", "1e-3", "--warmup", "2", "--precision", "fp32"]
    args += ["--seed", "3", "--save-every-n-steps", "3", "--log-every-n-steps", "1", "--fsdp"]
    args += ["--dist-timeout", "60", "--logs", str(logs)]
    stamp = root / "killed-at"
    jobs = {
        "straight": subprocess.Popen(
            # written in the background: the other runs resume to its final weights, so its checkpoints count
            [*torchrun(), "-m", "clipctl", "--", *args, "--name", "straight", "--async-checkpoint"],
            env=launch_env(),
            stderr=subprocess.PIPE,
            text=True,
        ),
        "killed": subprocess.Popen(
            [*torchrun(), KILLER, "7", "--", *args, "--name", "killed"],
            env=launch_env(KILL_RANK="1", KILL_STAMP=str(stamp)),
            stderr=subprocess.PIPE,
            text=True,
        ),
    }
    done = {}
    for name, job in jobs.items():
        _, errors = job.communicate(timeout=600)
        done[name] = (job.returncode, errors, time.time())
    assert done["straight"][0] == 0, done["straight"][1][-3000:]
    return {"root": root, "logs": logs, "args": args, "done": done, "stamp": stamp}


def test_torchrun_job_stops_soon_after_a_rank_is_killed_mid_step(runs):
    returncode, errors, ended = runs["done"]["killed"]
    assert returncode != 0
    # well within --dist-timeout 60: nobody waits for the dead rank
    assert ended - float(runs["stamp"].read_text()) < 30
    run = runs["logs"] / "killed"
    info = read_info(find_latest_checkpoint(run))
    assert (info.epoch, info.step, info.batch_in_epoch) == (1, 6, 2)
    assert not (run / "checkpoints" / "epoch_2").exists()


def test_clipctl_resume_of_a_killed_sharded_run_gives_the_uninterrupted_weights(runs, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(runs["logs"] / "killed", run, symlinks=True)
    resumed = subprocess.run(
        [*torchrun(), "-m", "clipctl", "--", "resume", str(run)],
        env=launch_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "step_6" in resumed.stderr
    _assert_same_weights(_weights(runs["logs"] / "straight"), _weights(run))
    # and the run did move after the resume point
    before, after = _weights(run, "epoch_1"), _weights(run)
    assert max((before[k] - after[k]).abs().max().item() for k in after) > 1e-4


def test_a_checkpoint_of_two_ranks_resumes_in_one_process_at_its_step(runs, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(runs["logs"] / "killed", run, symlinks=True)
    resumed = subprocess.run(
        [*CLIPCTL, "resume", str(run)], env=launch_env(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 6, written by 2 process(es)" in resumed.stderr
    # one rank: 8 steps per epoch; batch 2 of two ranks is 4 of one, so 4 steps remain after step 6
    assert "(global 7)" in resumed.stderr and "(global 6)" not in resumed.stderr
    assert read_info(run / "checkpoints" / "epoch_2").step == 10


def test_torchrun_max_restarts_resumes_by_itself_to_the_uninterrupted_weights(runs):
    job = subprocess.run(
        [*torchrun("--max-restarts", "1"), KILLER, "7", "--", *runs["args"], "--name", "restarted"],
        env=launch_env(KILL_RANK="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    assert "torchrun restart 1" in job.stderr and "step_6" in job.stderr
    _assert_same_weights(_weights(runs["logs"] / "straight"), _weights(runs["logs"] / "restarted"))


def test_export_of_a_sharded_checkpoint_loads_strictly_with_the_trained_features(runs, tmp_path):
    from clipctl.api import create_model
    from clipctl.config.run import resolve_run_config
    from clipctl.runtime import plan_precision
    from clipctl.train.dcp_checkpoint import load_sharded
    from clipctl.train.fsdp import prepare_for_sharding
    from clipctl.train.optim import build_optimizer

    checkpoint = runs["logs"] / "straight" / "checkpoints" / "epoch_2"
    model_json = runs["args"][runs["args"].index("--model") + 1]
    done = subprocess.run(
        [
            *CLIPCTL,
            "export",
            "--model",
            model_json,
            "--pretrained",
            str(checkpoint),
            "--out",
            str(tmp_path / "hub"),
        ],
        env=launch_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    exported = create_model(f"local-dir:{tmp_path / 'hub'}", output_dict=True).eval()
    # the trained model, restored the way a resume restores it (DCP into the sharding-ready model)
    trained = create_model(model_json, output_dict=True)
    prepare_for_sharding(trained)
    cfg = resolve_run_config(None, {"model": model_json, "precision": "fp32"}, [])
    load_sharded(checkpoint, trained, build_optimizer(cfg, trained))
    trained.eval()
    del plan_precision
    images = torch.rand(4, 3, 32, 32)
    texts = torch.randint(1, 49406, (4, 16))
    with torch.no_grad():
        a, b = exported(images, texts), trained(images, texts)
    for key in ("image_features", "text_features"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert exported.logit_scale.shape == torch.Size([])  # the architecture's own shape again


def test_a_rank_that_dies_or_hangs_ends_the_others_with_one_line(runs, tmp_path):
    """srun-style launch (no torchrun agent to stop the survivors): the collectives themselves must fail."""
    for signal_name, expected, bound in (
        ("KILL", "another rank died", 30),
        ("STOP", "did not answer within", 60),
    ):
        port = str(free_port())
        args = [a if a != "60" else "15" for a in runs["args"]] + ["--name", f"srun-{signal_name.lower()}"]
        procs = []
        for rank in (0, 1):
            env = launch_env(
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
                WORLD_SIZE="2",
                RANK=str(rank),
                LOCAL_RANK=str(rank),
            )
            env.update(KILL_RANK="1", KILL_SIGNAL=signal_name, KILL_STAMP=str(tmp_path / "stamp"))
            procs.append(
                subprocess.Popen(
                    [sys.executable, KILLER, "3", "--", *args], env=env, stderr=subprocess.PIPE, text=True
                )
            )
        try:
            _, errors = procs[0].communicate(timeout=600)
            ended = time.time()
        finally:
            procs[1].kill()
            procs[1].communicate()
        lines = [line for line in errors.splitlines() if line.strip()]
        assert procs[0].returncode == 1, errors[-3000:]
        assert "Traceback" not in errors
        assert lines[-1].startswith("clipctl: error: rank 0 stopped:") and expected in lines[-1], lines[-1]
        assert ended - float((tmp_path / "stamp").read_text()) < bound


def _consolidated_by_torch(folder: Path, out: Path) -> Path:
    """The model entries of a sharded folder through torch's own converter (not clipctl's reader)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from clipctl.checkpoint import SHARDED_MODEL_KEY

    whole = out.with_suffix(".whole.pt")
    dcp_to_torch_save(str(folder), str(whole))
    state = torch.load(whole, weights_only=True)
    torch.save(dict(state[SHARDED_MODEL_KEY]), out)
    return out


def test_soup_and_wise_ft_of_sharded_checkpoints_equal_those_of_their_consolidated_files(runs, tmp_path):
    from safetensors.torch import load_file

    from clipctl.api import create_model
    from clipctl.soup.soup_job import SoupOptions, run_soup
    from clipctl.soup.wise_ft_job import WiseFtOptions, run_wise_ft

    folders = [runs["logs"] / "straight" / "checkpoints" / name for name in ("epoch_1", "epoch_2")]
    files = [_consolidated_by_torch(f, tmp_path / f"{f.name}.pt") for f in folders]
    sharded = [str(f) for f in folders]
    done = subprocess.run(
        [*CLIPCTL, "soup", *sharded, "--out", str(tmp_path / "soup.safetensors")],
        env=launch_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run_soup(SoupOptions(checkpoints=[str(f) for f in files], out=tmp_path / "files.safetensors"))
    from_folders, from_files = (
        load_file(tmp_path / "soup.safetensors"),
        load_file(tmp_path / "files.safetensors"),
    )
    assert from_folders.keys() == from_files.keys()
    for key, tensor in from_files.items():
        torch.testing.assert_close(from_folders[key], tensor, rtol=0, atol=0)
    # the two epochs differ, so the soup is neither of them
    first = torch.load(files[0], weights_only=True)
    assert any(not torch.equal(first[k], v) for k, v in from_files.items())

    # WiSE-FT of the two folders into a Hub-layout folder: the architecture comes from the run's config.yaml
    run_wise_ft(WiseFtOptions(zeroshot=sharded[0], finetuned=sharded[1], out=tmp_path / "mix", alphas="0.3"))
    run_wise_ft(
        WiseFtOptions(zeroshot=str(files[0]), finetuned=str(files[1]), out=tmp_path / "m.pt", alphas="0.3")
    )
    mixed = create_model(f"local-dir:{tmp_path / 'mix'}").state_dict()
    expected = create_model(
        runs["args"][runs["args"].index("--model") + 1], pretrained=str(tmp_path / "m.pt")
    )
    for key, tensor in expected.state_dict().items():
        torch.testing.assert_close(mixed[key], tensor, rtol=0, atol=0)
