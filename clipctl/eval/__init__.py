"""Evaluation jobs (zero-shot classification, retrieval, linear probes) and result tables. Submodules import
torch; this package does not."""
