"""Training: run config to data pipeline, loop, checkpoints and resume."""
