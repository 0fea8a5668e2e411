"""The training job: ``preflight`` (checks, no side effects), then ``Trainer.setup()`` and ``Trainer.train()``.

Usable from Python without the CLI::

    from clipctl.config.run import resolve_run_config
    from clipctl.train.trainer import Trainer, preflight

    cfg = resolve_run_config("tiny_cpu", {"train_data": "shards/{00000..00003}.tar"}, [])
    preflight(cfg)
    trainer = Trainer(cfg)
    trainer.setup()
    trainer.train()

The loop in :meth:`Trainer.train` is the whole order of events: fetch micro-batches, set the learning rate,
``train_step`` (forward, loss, backward, clip, step, clamp), log, checkpoint; evaluate at the end of an epoch.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipctl.checkpoint import is_sharded_checkpoint
from clipctl.config.run import TrainConfig, dump_run_config, report_targets
from clipctl.errors import ClipctlError, RunFailure
from clipctl.fileio import symlink_atomic, write_text_atomic
from clipctl.runtime import ProgressBar, choose_compute_threads, plan_precision
from clipctl.train import checkpointing as ckpt_io
from clipctl.train.distributed import (
    DistEnv,
    all_reduce_max,
    barrier,
    broadcast_object,
    cleanup,
    collective_failure,
    elastic_restart_count,
    init_distributed,
    world_from_env,
)
from clipctl.train.preflight import preflight, resolve_student, run_dir_of
from clipctl.train.run_log import MetricsSink, setup_text_logging
from clipctl.train.step import train_step, unwrap_model

logger = logging.getLogger("clipctl.train")

__all__ = ["Trainer", "preflight", "resolve_student", "run_dir_of", "run_training"]


def _replace_linears_with_bnb(model: nn.Module, class_name: str) -> None:
    import bitsandbytes as bnb  # noqa: F401 - presence checked in preflight
    from bitsandbytes.nn import triton_based_modules

    linear_cls = getattr(triton_based_modules, class_name, None)
    if linear_cls is None:
        raise ClipctlError(f"bitsandbytes has no linear class {class_name!r}")
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if child_name in ("c_fc", "c_proj") and isinstance(child, nn.Linear):
                replacement = linear_cls(child.in_features, child.out_features, bias=child.bias is not None)
                replacement.weight.data.copy_(child.weight.data)
                if child.bias is not None:
                    replacement.bias.data.copy_(child.bias.data)
                setattr(parent, child_name, replacement)


class Trainer:
    """A training run. ``setup()`` builds everything (process group, model, data, optimizer, resume state);
    ``train()`` runs the remaining epochs; ``save_checkpoint()`` writes the current state."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.env: DistEnv | None = None
        self.run_dir = run_dir_of(cfg)
        self.start_epoch = 0
        self.global_step = 0
        self.skip_batches = 0
        self.last_checkpoint: Path | None = None
        self.history: list[dict[str, Any]] = []

    # ---- setup -------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        self.env = env = init_distributed(
            device=cfg.device,
            dist_backend=cfg.dist_backend,
            dist_url=cfg.dist_url,
            no_set_device_rank=cfg.no_set_device_rank,
            timeout=cfg.dist_timeout,
        )
        # a generated name holds the start time, which may differ between ranks by a second
        cfg.name = broadcast_object(env, cfg.name)
        self.run_dir = run_dir_of(cfg)
        self.plan = plan_precision(cfg.precision, env.device, training=True)
        self._seed(cfg.seed + env.rank)
        self._setup_run_dir()
        if self.plan.note and env.is_master:
            logger.warning(self.plan.note)
        if elastic_restart_count() and env.is_master:
            logger.info(f"torchrun restart {elastic_restart_count()}: continuing from the newest checkpoint")
        self._build_model()
        if env.device.type == "cpu":
            self._choose_threads()
        resume_ckpt = self._find_resume_checkpoint()
        if cfg.fsdp:
            # the optimizer must hold the sharded parameters, and a sharded checkpoint loads into them
            self._shard_model()
        self._build_optimizer()
        if resume_ckpt is not None:
            self._load_resume_state(resume_ckpt)
        if not cfg.fsdp:
            self._wrap_model()
        self._build_data()
        from clipctl.train.losses import build_loss
        from clipctl.train.optim import build_schedule

        self.loss_fn = build_loss(cfg, self.model)
        self.steps_per_epoch = self.data.num_batches // cfg.accum_freq
        if self.steps_per_epoch < 1:
            raise ClipctlError(
                f"an epoch has {self.data.num_batches} batches, fewer than --accum-freq {cfg.accum_freq}"
            )
        self.schedule = build_schedule(cfg, self.steps_per_epoch)
        self.sink = MetricsSink(
            self.run_dir,
            targets=report_targets(cfg.report_to),
            config=cfg.to_dict(),
            enabled=env.is_master,
            wandb_project=cfg.wandb_project_name,
            wandb_notes=cfg.wandb_notes,
            resuming=resume_ckpt is not None,
        )
        self.progress = ProgressBar(env.is_master, stats=True, transient=False)
        self.remote_sync = None
        if cfg.remote_sync and env.is_master and self.run_dir is not None:
            from clipctl.train.remote_sync import RemoteSync

            self.remote_sync = RemoteSync(
                self.run_dir, cfg.remote_sync, cfg.remote_sync_protocol, cfg.remote_sync_frequency
            )
            self.remote_sync.start()

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            import numpy as np

            np.random.seed(seed % 2**32)
        except ImportError:
            pass

    def _setup_run_dir(self) -> None:
        env, cfg = self.env, self.cfg
        log_file = None
        if self.run_dir is not None:
            if env.is_master:
                (self.run_dir / ckpt_io.CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
                write_text_atomic(self.run_dir / "config.yaml", dump_run_config(cfg))
            barrier(env)
            if env.is_master:
                log_file = self.run_dir / "out.log"
            elif cfg.log_local:
                log_file = self.run_dir / f"out-rank{env.rank}.log"
        setup_text_logging(log_file, debug=cfg.debug, rank=env.rank, console=env.is_master)
        if env.is_master:
            where = f" in {self.run_dir}" if self.run_dir is not None else ""
            logger.info(
                f"run {cfg.name}{where}: {env.world_size} process(es) on {env.device}, precision {cfg.precision}"
            )

    def _build_model(self) -> None:
        from clipctl.api import create_model, create_model_and_transforms, get_tokenizer

        cfg, env = self.cfg, self.env
        model_kwargs: dict[str, Any] = {}
        if cfg.siglip:
            model_kwargs.update(init_logit_scale=float(torch.log(torch.tensor(10.0))), init_logit_bias=-10.0)
        if env.is_master:
            for note in resolve_student(cfg).notes:
                logger.info(note)
        model, self.preprocess_train, self.preprocess_val = create_model_and_transforms(
            cfg.model,
            cfg.pretrained or None,
            allow_random_weights=True,
            precision=self.plan.model_precision,
            device=env.device,
            pretrained_image=cfg.pretrained_image,
            image_mean=tuple(cfg.image_mean) or None,
            image_std=tuple(cfg.image_std) or None,
            image_interpolation=cfg.image_interpolation,
            image_resize_mode=cfg.image_resize_mode,
            aug_cfg=cfg.aug_cfg or None,
            output_dict=True,
            cache_dir=cfg.cache_dir,
            **cfg.model_overrides(),
            **model_kwargs,
        )
        if cfg.hf_tokenizer_name:
            from clipctl.tokenizer import HFTokenizer

            self.tokenizer = HFTokenizer(cfg.hf_tokenizer_name, context_length=model.context_length)
        else:
            self.tokenizer = get_tokenizer(
                cfg.model, context_length=cfg.force_context_length, cache_dir=cfg.cache_dir
            )
        if cfg.lock_image:
            model.lock_image_tower(
                unlocked_groups=cfg.lock_image_unlocked_groups, freeze_bn_stats=cfg.lock_image_freeze_bn_stats
            )
        if cfg.lock_text:
            model.lock_text_tower(
                unlocked_layers=cfg.lock_text_unlocked_layers,
                freeze_layer_norm=cfg.lock_text_freeze_layer_norm,
            )
        if cfg.grad_checkpointing:
            model.set_grad_checkpointing(True)
        if env.device.type == "cpu" and sum(isinstance(m, nn.Conv2d) for m in model.visual.modules()) > 1:
            # oneDNN's convolutions are ~1.3x faster on NHWC weights on a CPU (tiny-RN-demo: 152 -> 193
            # samples/s); a ViT has a single patch-embedding conv and gains nothing.
            model.to(memory_format=torch.channels_last)
        if cfg.use_bnb_linear:
            _replace_linears_with_bnb(model, cfg.use_bnb_linear)
            model.to(env.device)
        self.model = model
        self.teacher = None
        if cfg.distill_model:
            teacher = create_model(
                cfg.distill_model,
                cfg.distill_pretrained,
                precision=self.plan.model_precision,
                device=env.device,
                output_dict=True,
                cache_dir=cfg.cache_dir,
            )
            teacher.eval()
            teacher.requires_grad_(False)
            self.teacher = teacher
        if env.is_master:
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            total = sum(p.numel() for p in model.parameters())
            logger.info(f"model {cfg.model}: {total / 1e6:.2f}M parameters, {trainable / 1e6:.2f}M trainable")

    def _choose_threads(self) -> None:
        from clipctl.models.stats import training_gflops_per_sample

        gflops = training_gflops_per_sample(unwrap_model(self.model))
        threads = choose_compute_threads(self.cfg.workers, gflops)
        if self.env.is_master:
            cost = f"{gflops:.2f}" if gflops is not None else "unknown"
            logger.info(
                f"{threads} compute thread(s) and {self.cfg.workers} loader worker(s) "
                f"(training cost {cost} GFLOPs per sample)"
            )

    def _find_resume_checkpoint(self) -> Path | None:
        cfg = self.cfg
        if cfg.resume is None:
            return None
        if cfg.resume == "latest":
            path = ckpt_io.find_latest_checkpoint(self.run_dir) if self.run_dir is not None else None
            if path is None and self.env.is_master:
                logger.info("--resume latest: no checkpoint yet, starting from scratch")
            return path
        return Path(cfg.resume)

    def _build_optimizer(self) -> None:
        from clipctl.train.optim import build_optimizer

        self.optimizer = build_optimizer(self.cfg, self.model)
        self.scaler = None
        if self.plan.use_grad_scaler:
            if self.cfg.fsdp and self.env.distributed:
                # each rank sees only its shard of the gradients: the overflow check must be agreed on
                from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

                self.scaler = ShardedGradScaler(self.env.device.type)
            else:
                self.scaler = torch.amp.GradScaler(self.env.device.type)
        self.checkpointer = None
        if self.cfg.fsdp:
            from clipctl.train.dcp_checkpoint import ShardedCheckpointer

            self.checkpointer = ShardedCheckpointer(self.env, background=self.cfg.async_checkpoint)

    def _load_resume_state(self, path: Path) -> None:
        sharded = is_sharded_checkpoint(path)
        if sharded != self.cfg.fsdp:
            raise ClipctlError(
                f"checkpoint {path} is sharded (written by an --fsdp run): resume it with --fsdp (any number of "
                "processes), or start from its weights with --pretrained"
                if sharded
                else f"checkpoint {path} is a single file: an --fsdp run resumes from sharded checkpoint folders; "
                "start from its weights with --pretrained instead"
            )
        if sharded:
            from clipctl.train.dcp_checkpoint import load_sharded

            ckpt = load_sharded(path, self.model, self.optimizer)
            if self.scaler is not None and "scaler" in ckpt:
                self.scaler.load_state_dict(ckpt["scaler"])
            self._restore_position(ckpt, path)
            return
        ckpt = ckpt_io.load_for_resume(path)
        model = self.model
        if "epoch" not in ckpt:
            # a bare state dict: weights only, as OpenCLIP
            model.load_state_dict(ckpt_io.strip_module_prefix(ckpt))
            logger.info(f"loaded weights from {path} (no training state in it)")
            return
        try:
            model.load_state_dict(ckpt_io.strip_module_prefix(ckpt["state_dict"]))
        except RuntimeError as err:
            raise ClipctlError(
                f"checkpoint {path} does not fit model {self.cfg.model}: {str(err).splitlines()[1].strip()}"
            ) from err
        if "optimizer" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        self._restore_position(ckpt, path)

    def _restore_position(self, ckpt: dict[str, Any], path: Path) -> None:
        world_size = self.env.world_size
        self.start_epoch = int(ckpt["epoch"])
        self.skip_batches = int(ckpt.get("batch_in_epoch", 0))
        saved_world = int(ckpt.get("world_size", world_size))
        if saved_world != world_size and self.skip_batches:
            # a batch index counts per-rank batches: skip the same number of samples with the new world size
            self.skip_batches = self.skip_batches * saved_world // world_size
        self.global_step = int(ckpt.get("step", 0))
        if self.env.rank == 0:
            ckpt_io.set_rng_state(ckpt.get("rng"))
        self.last_checkpoint = path
        where = f", batch {self.skip_batches}" if self.skip_batches else ""
        ranks = f", written by {saved_world} process(es)" if saved_world != world_size else ""
        logger.info(f"resumed from {path} (epoch {self.start_epoch}{where}, step {self.global_step}{ranks})")

    def _shard_model(self) -> None:
        from clipctl.train.fsdp import prepare_for_sharding, shard_model

        cfg, env = self.cfg, self.env
        if cfg.use_bn_sync and env.distributed:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        prepare_for_sharding(self.model)
        if not env.distributed:
            if env.is_master:
                logger.info("--fsdp in one process: nothing to shard; checkpoints are still sharded folders")
            if cfg.torchcompile:
                self.model = torch.compile(self.model)
            return
        shard_model(
            self.model,
            device=env.device,
            world_size=env.world_size,
            plan=self.plan,
            reshard_after_forward=cfg.fsdp_reshard_after_forward,
            cpu_offload=cfg.fsdp_cpu_offload,
            compile_blocks=cfg.torchcompile,
        )

    def _wrap_model(self) -> None:
        cfg, env = self.cfg, self.env
        if env.distributed:
            if cfg.use_bn_sync:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            device_ids = [env.device] if env.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=device_ids, static_graph=cfg.ddp_static_graph
            )
        if cfg.torchcompile:
            self.model = torch.compile(self.model)

    def _build_data(self) -> None:
        from clipctl.train.data import build_train_data, build_val_data

        cfg, env = self.cfg, self.env
        self.data = build_train_data(
            cfg,
            self.preprocess_train,
            self.tokenizer,
            epoch=self.start_epoch,
            rank=env.rank,
            world_size=env.world_size,
            skip_batches=self.skip_batches,
        )
        self.val_data = (
            build_val_data(cfg, self.preprocess_val, self.tokenizer)
            if env.is_master or self.eval_everywhere
            else None
        )

    @property
    def eval_everywhere(self) -> bool:
        """Sharded weights are gathered by all ranks at once, so every rank runs each evaluation forward (on
        the same data; rank 0 reports). Unsharded models evaluate on rank 0 alone."""
        return self.cfg.fsdp and self.env.distributed

    # ---- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(
        self, *, epoch: int, batch_in_epoch: int, files: list[str], delete: str | None = None
    ) -> Path | None:
        """Write the current state under ``files`` (names under checkpoints/: the first is written, the others
        link to it), then delete older step checkpoints and ``delete``. Every rank must call it."""
        if self.run_dir is None or not files:
            return None
        folder = self.run_dir / ckpt_io.CHECKPOINT_DIR
        position = ckpt_io.checkpoint_position(
            epoch=epoch,
            step=self.global_step,
            batch_in_epoch=batch_in_epoch,
            world_size=self.env.world_size,
            name=str(self.cfg.name),
            config=self.cfg.to_dict(),
        )
        path = folder / files[0]
        done = (lambda saved: self._tidy(saved, files, delete, position)) if self.env.is_master else None
        if self.checkpointer is not None:
            if self.scaler is not None:
                position["scaler"] = self.scaler.state_dict()
            self.checkpointer.save(self.model, self.optimizer, position, path, published=done)
            self.last_checkpoint = path
            return path
        if self.env.is_master:
            state = ckpt_io.build_checkpoint(
                model_state=unwrap_model(self.model).state_dict(),
                optimizer=self.optimizer,
                scaler=self.scaler,
                position=position,
            )
            ckpt_io.save_as(state, folder, files)
            done(path)
            self.last_checkpoint = path
        barrier(self.env)
        return path

    def _tidy(self, path: Path, files: list[str], delete: str | None, position: dict[str, Any]) -> None:
        """Rank 0, once ``path`` is complete on disk (later, from the writer thread, for a background save)."""
        if path.is_dir():
            for name in files[1:]:
                symlink_atomic(path.name, path.parent / name)
        ckpt_io.prune_step_checkpoints(path.parent, keep=path)
        if delete is not None:
            ckpt_io.remove_checkpoint(path.parent / delete)
        logger.info(f"saved {', '.join(files)} (epoch {position['epoch']}, step {position['step']})")

    def _checkpoint_name(self, stem: str) -> str:
        return stem if self.cfg.fsdp else f"{stem}.pt"

    def _epoch_end_files(self, completed: int) -> list[str]:
        cfg = self.cfg
        files = []
        if completed == cfg.epochs or (cfg.save_frequency > 0 and completed % cfg.save_frequency == 0):
            files.append(self._checkpoint_name(f"epoch_{completed}"))
        if files or cfg.save_most_recent:
            files.append(self._checkpoint_name("epoch_latest"))
        return files

    # ---- the loop ----------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg, env = self.cfg, self.env
        try:
            if self.start_epoch >= cfg.epochs:
                logger.info(f"nothing to do: the checkpoint already finished {cfg.epochs} epoch(s)")
                return {}
            for epoch in range(self.start_epoch, cfg.epochs):
                self._train_epoch(epoch)
                completed = epoch + 1
                previous = self._checkpoint_name(f"epoch_{completed - 1}")
                self.save_checkpoint(
                    epoch=completed,
                    batch_in_epoch=0,
                    files=self._epoch_end_files(completed),
                    delete=previous if cfg.delete_previous_checkpoint else None,
                )
                self._evaluate(completed)
            if self.checkpointer is not None:
                self.checkpointer.wait()
            skipped = self.data.skipped()
            if env.is_master and skipped:
                logger.warning(f"skipped {skipped} corrupt or unreadable sample(s) during training")
            return self.history[-1] if self.history else {}
        finally:
            self.close()

    def close(self) -> None:
        if getattr(self, "checkpointer", None) is not None:
            try:
                self.checkpointer.wait()
            except Exception as err:  # noqa: BLE001 - already failing: report, do not mask the first error
                logger.error(f"the background checkpoint write failed too: {str(err).splitlines()[0][:200]}")
        if getattr(self, "progress", None) is not None:
            self.progress.stop()
        if getattr(self, "remote_sync", None) is not None:
            self.remote_sync.stop()
            self.remote_sync = None
        if getattr(self, "sink", None) is not None:
            self.sink.close()
        if self.env is not None:
            cleanup(self.env)

    def _train_epoch(self, epoch: int) -> None:
        cfg, env = self.cfg, self.env
        data = self.data
        data.set_epoch(epoch)
        batch_index = data.start_batch(epoch)
        self.progress.start(f"epoch {epoch}", self.steps_per_epoch, batch_index // cfg.accum_freq)
        samples_per_step = cfg.batch_size * env.world_size * cfg.accum_freq
        nonfinite = torch.zeros((), dtype=torch.bool, device=env.device)
        window_start, window_steps = time.perf_counter(), 0
        epoch_start_step = self.global_step
        micro: list[tuple[torch.Tensor, ...]] = []
        result = None
        for images, *rest in data.dataloader:  # (images, texts) or (images, texts, labels)
            micro.append((data.to_input(images, env.device), *rest))
            batch_index += 1
            if len(micro) < cfg.accum_freq:
                continue
            lr = self.schedule.apply(self.optimizer, self.global_step) if self.schedule else cfg.lr
            result = train_step(
                self.model,
                micro,
                self.loss_fn,
                self.optimizer,
                plan=self.plan,
                device=env.device,
                scaler=self.scaler,
                grad_clip_norm=cfg.grad_clip_norm,
                teacher=self.teacher,
            )
            micro = []
            self.global_step += 1
            window_steps += 1
            nonfinite |= ~result.finite
            if env.device.type == "cpu":
                # free on CPU (no device sync): stop at the first bad step; on GPUs check at log/save points
                self._check_finite(nonfinite, epoch)
            step_in_epoch = batch_index // cfg.accum_freq
            last_of_epoch = step_in_epoch >= self.steps_per_epoch
            if self.global_step % cfg.log_every_n_steps == 0 or last_of_epoch:
                self._check_finite(nonfinite, epoch)
                elapsed = time.perf_counter() - window_start
                rate = samples_per_step * window_steps / max(elapsed, 1e-9)
                self._log_step(epoch, step_in_epoch, lr, result, rate)
                window_start, window_steps = time.perf_counter(), 0
            if (
                cfg.save_every_n_steps
                and self.global_step % cfg.save_every_n_steps == 0
                and not last_of_epoch
                and self.run_dir is not None
            ):
                self._check_finite(nonfinite, epoch)
                files = [
                    self._checkpoint_name(f"step_{self.global_step}"),
                    self._checkpoint_name("epoch_latest"),
                ]
                self.save_checkpoint(epoch=epoch, batch_in_epoch=batch_index, files=files)
            self.progress.update(
                step_in_epoch,
                f"loss {float(result.losses['loss']):.4f} lr {lr:.2e}"
                if env.device.type == "cpu"
                else f"lr {lr:.2e}",
            )
            if last_of_epoch:
                break
        self._check_finite(nonfinite, epoch)
        self.progress.stop()
        if self.global_step == epoch_start_step and env.is_master:
            logger.warning(f"epoch {epoch} produced no training step (is the data empty?)")

    def _check_finite(self, nonfinite: torch.Tensor, epoch: int) -> None:
        # every rank calls this at the same steps; agree on the answer so that no rank is left waiting in a
        # collective while another one stops
        if all_reduce_max(self.env, float(nonfinite.item())) > 0:
            last = (
                f"the last good checkpoint is {self.last_checkpoint}"
                if self.last_checkpoint
                else "no checkpoint was saved"
            )
            raise RunFailure(
                f"loss became NaN or infinite by step {self.global_step} (epoch {epoch}); stopped without saving "
                f"({last}); try a lower --lr, --grad-clip-norm, or --precision amp_bf16"
            )

    def _log_step(self, epoch: int, step_in_epoch: int, lr: float, result: Any, rate: float) -> None:
        from clipctl.train.fsdp import full_value

        with torch.no_grad():
            # a sharded parameter is gathered by all ranks together
            scale = float(full_value(unwrap_model(self.model).logit_scale.detach()).exp().max())
        if not self.env.is_master:
            return
        losses = {k: float(v) for k, v in result.losses.items()}
        record = {
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "lr": lr,
            "samples_per_second": round(rate, 2),
            "logit_scale": scale,
            **losses,
        }
        total_steps = self.steps_per_epoch * self.cfg.epochs
        eta = (
            (total_steps - self.global_step)
            * self.cfg.batch_size
            * self.env.world_size
            * self.cfg.accum_freq
            / max(rate, 1e-9)
        )
        loss_text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        logger.info(
            f"epoch {epoch} step {step_in_epoch}/{self.steps_per_epoch} (global {self.global_step}) | {loss_text} | "
            f"lr {lr:.3e} | {rate:.1f} samples/s | logit_scale {scale:.2f} | ETA {_duration(eta)}"
        )
        self.sink.write("train", self.global_step, record)

    def _evaluate(self, completed: int) -> None:
        cfg, env = self.cfg, self.env
        from clipctl.train.evaluate import should_run, val_metrics, write_results_jsonl, zero_shot_metrics
        from clipctl.train.fsdp import root_gathered

        results: dict[str, Any] = {}
        if env.is_master or self.eval_everywhere:
            if should_run(cfg.zeroshot_frequency, completed, cfg.epochs) and (
                cfg.imagenet_val or cfg.imagenet_v2
            ):
                with root_gathered(unwrap_model(self.model)):
                    results.update(
                        zero_shot_metrics(
                            self.model,
                            cfg,
                            self.preprocess_val,
                            self.tokenizer,
                            device=env.device,
                            plan=self.plan,
                        )
                    )
            if self.val_data is not None and should_run(cfg.val_frequency, completed, cfg.epochs):
                results.update(val_metrics(self.model, self.val_data, device=env.device, plan=self.plan))
            if results and env.is_master:
                results["epoch"] = completed
                logger.info(
                    "eval epoch %d: %s",
                    completed,
                    ", ".join(f"{k} {v:.4f}" for k, v in results.items() if isinstance(v, float)),
                )
                self.sink.write("val", self.global_step, results)
                write_results_jsonl(self.run_dir, results)
                self.history.append(results)
        barrier(env)


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def run_training(cfg: TrainConfig) -> Trainer:
    """preflight + setup + train: what ``clipctl train`` does. Returns the finished Trainer.

    Under ``torchrun --max-restarts N`` a restarted job continues from the newest complete checkpoint of its
    run folder (``--resume latest``). A collective that fails because another rank died or hangs ends this
    rank with one line (RunFailure), not a traceback."""
    if elastic_restart_count() > 0 and cfg.resume is None:
        cfg.resume = "latest"
    preflight(cfg)
    trainer = Trainer(cfg)
    try:
        try:
            trainer.setup()
        except BaseException:
            trainer.close()
            raise
        trainer.train()
    except BaseException as err:
        failure = collective_failure(err, rank=world_from_env()[0], timeout=cfg.dist_timeout)
        if failure is not None:
            raise failure from err
        raise
    return trainer
