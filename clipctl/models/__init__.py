"""Model towers and CLIP / CustomTextCLIP / CoCa, built from OpenCLIP-schema configs."""

import clipctl.models.unireplknet  # noqa: F401 - registers the UniRepLKNet variants with timm
from clipctl.models.build import build_model_from_config
from clipctl.models.clip import CLIP, CustomTextCLIP
from clipctl.models.coca import CoCa
from clipctl.models.precision import convert_weights_to_lp
from clipctl.runtime.precision import get_cast_dtype, get_input_dtype

__all__ = [
    "CLIP",
    "CoCa",
    "CustomTextCLIP",
    "build_model_from_config",
    "convert_weights_to_lp",
    "get_cast_dtype",
    "get_input_dtype",
]
