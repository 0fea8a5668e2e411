"""The memory plan as a table (``clipctl train --dry-run`` and ``clipctl models show --plan``)."""

from __future__ import annotations

from typing import Any

from clipctl.cli.console import err


def _size(value: int) -> str:
    if value >= 1024**3:
        return f"{value / 1024**3:.2f} GiB"
    return f"{value / 1024**2:.1f} MiB"


def print_memory_plan(plan: Any) -> None:  # clipctl.train.memory_plan.MemoryPlan (imported lazily)
    """On stderr: stdout of a dry run stays the run config as YAML."""
    from rich.table import Table

    strategies = list(plan.ranks)
    title = f"memory per rank: {plan.model}, {plan.batch_size}/rank x {plan.world_size}, {plan.precision}"
    table = Table("", *strategies, title=title)
    for label, values in plan.rows():
        table.add_row(label, *(_size(v) for v in values))
    chosen = []
    if plan.grad_checkpointing:
        chosen.append("--grad-checkpointing")
    if plan.local_loss:
        chosen.append("--local-loss")
    table.add_row(
        f"total ({' '.join(chosen) or 'as configured'})", *(_size(plan.total(s)) for s in strategies)
    )
    err.print(table)
    if plan.device_memory_gib is None:
        err.print("device memory unknown (no GPU visible): pass --device-memory GIB to compare")
        return
    verdicts = ", ".join(f"{s} {'fits' if plan.fits(s) else 'does not fit'}" for s in strategies)
    err.print(f"device memory {plan.device_memory_gib:.1f} GiB: {verdicts}")
    err.print(
        "parameters, activations and the logits are measured on the meta device; the total is an upper "
        "bound (see the README, 'Large models')"
    )
