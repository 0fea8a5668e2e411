"""Caption cleaning applied before tokenization (the CLIP and big_vision conventions)."""

from __future__ import annotations

import html
import re
import string
from collections.abc import Callable

import ftfy

from clipctl.errors import ClipctlError

_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)
# ftfy only changes text with non-ASCII characters, control characters, carriage returns or HTML entities;
# skipping it for plain printable ASCII (most captions) triples tokenizer throughput with identical output.
_FTFY_NOOP = re.compile(r"[\t\n\x20-\x25\x27-\x7e]*")


def basic_clean(text: str) -> str:
    if not _FTFY_NOOP.fullmatch(text):
        text = ftfy.fix_text(text)
    # Web captions are often escaped twice ("&amp;amp;"), so CLIP unescapes twice.
    text = html.unescape(html.unescape(text))
    return text.strip()


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def canonicalize_text(text: str) -> str:
    """big_vision's prompt canonicalisation: underscores to spaces, no punctuation, lowercase."""
    text = text.replace("_", " ").translate(_PUNCTUATION_TABLE).lower()
    return collapse_whitespace(text)


def _clean_lower(text: str) -> str:
    return collapse_whitespace(basic_clean(text)).lower()


def _clean_whitespace(text: str) -> str:
    return collapse_whitespace(basic_clean(text))


def _clean_canonicalize(text: str) -> str:
    return canonicalize_text(basic_clean(text))


CLEAN_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "lower": _clean_lower,
    "whitespace": _clean_whitespace,
    "canonicalize": _clean_canonicalize,
}


def get_clean_fn(mode: str) -> Callable[[str], str]:
    try:
        return CLEAN_FUNCTIONS[mode]
    except KeyError:
        known = ", ".join(CLEAN_FUNCTIONS)
        raise ClipctlError(f"unknown tokenizer clean mode {mode!r}; known: {known}") from None
