"""Publishing models in the Hugging Face Hub layout OpenCLIP reads (``hf-hub:`` / ``local-dir:``).

``export`` writes the folder (``open_clip_config.json``, ``open_clip_model.safetensors``, optional
``open_clip_pytorch_model.bin``, tokenizer files for Hugging Face text towers, and a ``README.md`` model card);
``push`` uploads it with ``huggingface_hub``.
"""

from clipctl.hub.export import ExportResult, PreparedModel, export_to_folder, prepare_model, write_hub_folder
from clipctl.hub.push import PushResult, push_to_hub, validate_repo_id

__all__ = [
    "ExportResult",
    "PreparedModel",
    "PushResult",
    "export_to_folder",
    "prepare_model",
    "push_to_hub",
    "validate_repo_id",
    "write_hub_folder",
]
