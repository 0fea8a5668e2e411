"""Which importable objects ("globals") a pickle would load, read from its opcodes without running anything.

``torch.load(weights_only=True)`` refuses a pickle that needs code, but says so in words that change between
torch versions ("Unsupported global: GLOBAL posix.system was not an allowed global ..." in 2.4, "... whose
module posix is blocked" in 2.14). Reading the opcodes ourselves tells, for any torch version, whether a
refused file needs code and which code: ``pickletools`` only decodes, it never imports or calls.

Both of torch's formats are read: the zip archive (``*/data.pkl``) and the legacy stream of pickles (magic
number, protocol, system info, then the object); a plain ``pickle.dump`` file is one pickle.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import zipfile
from pathlib import Path

# What a state dict or a training checkpoint is made of: tensors, their storages, dtypes and containers (the
# globals torch's weights-only unpickler accepts). Anything else - a class, a function, a pickled nn.Module -
# needs code.
_TENSOR_GLOBALS = {"collections.OrderedDict", "_codecs.encode", "torch.Size", "torch.device", "torch.dtype"}
_TENSOR_PREFIXES = (
    "torch._utils._rebuild_",
    "torch._tensor._rebuild_",
    "torch.nn.parameter.Parameter",
    "torch.storage._load_from_bytes",  # a tensor in a plain pickle.dump
)
_STRING_OPS = {
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"
}  # fmt: skip
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MAX_PICKLES = 4  # torch's legacy format: magic number, protocol, sys info, the object


def _python3_name(module: str, attr: str) -> str:
    """``module.attr`` as Python 3 imports it: protocol-2 pickles (torch's default) write Python 2 names such
    as ``__builtin__.eval``, which the unpickler maps as below."""
    if (module, attr) in _compat_pickle.NAME_MAPPING:
        module, attr = _compat_pickle.NAME_MAPPING[(module, attr)]
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def _globals_of_one_pickle(stream: io.BufferedIOBase) -> list[str]:
    """Globals of the pickle starting at ``stream``'s position (left after its STOP). Raises ValueError
    (or another decoding error) when the bytes are not a well-formed pickle."""
    found: list[str] = []
    pushed: list[str | None] = []  # the strings pushed lately, for STACK_GLOBAL's two arguments
    memo: dict[int, str | None] = {}
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            found.append(_python3_name(*str(arg).split(" ", 1)))
        elif name == "STACK_GLOBAL":
            module, attr = pushed[-2:] if len(pushed) >= 2 else [None, None]
            found.append(_python3_name(module, attr) if module and attr else "(unknown)")
        if name in _STRING_OPS:
            pushed.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
        elif name in _GET_OPS:
            pushed.append(memo.get(arg))
        elif name in _PUT_OPS:
            memo[arg] = pushed[-1] if pushed else None
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
    return found


def pickle_globals(path: str | Path) -> list[str] | None:
    """Every global the pickled object(s) in ``path`` would import, in order; None when the file is not a
    readable pickle (corrupt, truncated, or another format)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return None
                return _globals_of_one_pickle(io.BytesIO(archive.read(member)))
        found: list[str] = []
        with open(path, "rb") as stream:
            for _ in range(_MAX_PICKLES):
                found += _globals_of_one_pickle(stream)
                if found or not stream.peek(1):
                    break
        return found
    except Exception:  # noqa: BLE001 - any decoding failure means "not a readable pickle"
        return None


def is_tensor_global(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if name in _TENSOR_GLOBALS or name.startswith(_TENSOR_PREFIXES):
        return True
    # storages (torch.FloatStorage, torch.storage.UntypedStorage) and dtypes (torch.float32, torch.bfloat16)
    return module in ("torch", "torch.storage") and (
        attr.endswith("Storage") or attr.startswith(("float", "bfloat", "int", "uint", "complex", "bool"))
    )


def code_needed(path: str | Path) -> list[str] | None:
    """The globals in ``path`` beyond tensors and their containers (``posix.system``, ``builtins.eval``, a
    custom class, a pickled module ...), or None when the file is not a readable pickle."""
    found = pickle_globals(path)
    if found is None:
        return None
    return list(dict.fromkeys(g for g in found if not is_tensor_global(g)))
