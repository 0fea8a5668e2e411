"""Evaluation jobs (zero-shot classification, retrieval). Submodules import torch; this package does not."""
