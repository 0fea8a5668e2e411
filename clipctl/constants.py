"""Normalisation statistics and file names shared by the model, preprocessing and Hub code."""

from __future__ import annotations

OPENAI_DATASET_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_DATASET_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

# The Hugging Face Hub layout OpenCLIP publishes; kept identical so existing repos load as they are.
OPEN_CLIP_CONFIG = "open_clip_config.json"
SAFETENSORS_WEIGHTS = "open_clip_model.safetensors"
PT_WEIGHTS = "open_clip_pytorch_model.bin"

DEFAULT_CONTEXT_LENGTH = 77
