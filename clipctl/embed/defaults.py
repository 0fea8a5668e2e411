"""The weights `clipctl embed` uses when none are named (torch-free, so that the CLI's help can show them)."""

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"  # only with the default model: another model has no default weights
