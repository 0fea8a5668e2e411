"""ImageNet class names and prompt templates for zero-shot classification, plus user-supplied lists."""

from __future__ import annotations

import json
from pathlib import Path

from clipctl.errors import ClipctlError

_METADATA_PATH = Path(__file__).with_name("imagenet_metadata.json")
TEMPLATE_SETS = ("openai", "simple")


def _load_metadata() -> dict:
    with open(_METADATA_PATH, encoding="utf-8") as f:
        return json.load(f)


_METADATA = _load_metadata()
IMAGENET_CLASSNAMES: list[str] = list(_METADATA["imagenet_classnames"])
OPENAI_IMAGENET_TEMPLATES: list[str] = list(_METADATA["openai_imagenet_templates"])
SIMPLE_IMAGENET_TEMPLATES: list[str] = list(_METADATA["simple_imagenet_templates"])


def _read_lines(path: str | Path, what: str) -> list[tuple[int, str]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClipctlError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ClipctlError(f"cannot read {what} file {path}: {e}") from e
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    return [(n, line) for n, line in lines if line]


def load_templates(spec: str | Path) -> list[str]:
    """Prompt templates: ``'openai'`` (80), ``'simple'`` (7), or a file with one ``{c}`` template per line."""
    if spec == "openai":
        return list(OPENAI_IMAGENET_TEMPLATES)
    if spec == "simple":
        return list(SIMPLE_IMAGENET_TEMPLATES)
    if not Path(spec).is_file():
        raise ClipctlError(f"templates {str(spec)!r} are neither 'openai', 'simple' nor an existing file")
    templates = []
    for number, line in _read_lines(spec, "templates"):
        try:
            rendered = line.format(c="\0")
        except (KeyError, IndexError, ValueError):
            rendered = ""
        if "{c}" not in line or "\0" not in rendered:
            raise ClipctlError(
                f"{spec}:{number}: template {line!r} must contain {{c}} (where the class name goes) "
                "and no other {...} fields"
            )
        templates.append(line)
    if not templates:
        raise ClipctlError(f"templates file {spec} has no templates")
    return templates


def load_classnames(path: str | Path) -> list[str]:
    """Class names, one per line in label order; blank lines are skipped."""
    names = [line for _, line in _read_lines(path, "class names")]
    if not names:
        raise ClipctlError(f"class names file {path} is empty")
    return names
