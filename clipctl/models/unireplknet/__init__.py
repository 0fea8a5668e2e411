"""UniRepLKNet image trunks (Ding et al., "UniRepLKNet: A Universal Perception Large-Kernel ConvNet", CVPR 2024).

Written from the paper and the structure of the official model definition (AILab-CVC/UniRepLKNet, Apache-2.0),
so that the official checkpoints load unchanged: every module, attribute name and parameter shape below exists
because the released state dicts use it (``stages.{s}.{b}.dwconv.lk_origin.weight``, ``dil_conv_k{k}_{r}``,
``pwconv1.1``, ``act.1.gamma``, ``pwconv2.2`` ...).

A block is ``x + drop_path(gamma * pwconv2(GRN(GELU(pwconv1(SE(BN(dwconv(x))))))))``, where ``dwconv`` is either
a small depthwise conv or a *dilated re-parameterisation block*: one large depthwise kernel plus parallel dilated
small kernels, each followed by BatchNorm. For inference every BatchNorm, the dilated branches and the layer
scale fold into one large-kernel conv and one biased Linear per block (``reparameterize()``); ``deploy=True``
builds that structure directly.

Importing this module registers ``unireplknet_{a,f,p,n,t,s,b,l,xl}`` with timm, so ``timm.create_model`` and the
CLIP timm-trunk tower build them by name.
"""

from clipctl.models.unireplknet import variants  # noqa: F401 - registers the variants with timm
from clipctl.models.unireplknet.checkpoint import (
    adapt_state_dict,
    checkpoint_filter_fn,
    convert_unireplknet_clip_state_dict,
    load_trunk_state_dict,
    reparameterize_state_dict,
)
from clipctl.models.unireplknet.model import (
    DilatedReparamBlock,
    GRNwithNHWC,
    UniRepLKNet,
    UniRepLKNetBlock,
    reparameterize_model,
)

__all__ = [
    "DilatedReparamBlock",
    "GRNwithNHWC",
    "UniRepLKNet",
    "UniRepLKNetBlock",
    "adapt_state_dict",
    "checkpoint_filter_fn",
    "convert_unireplknet_clip_state_dict",
    "load_trunk_state_dict",
    "reparameterize_model",
    "reparameterize_state_dict",
]
