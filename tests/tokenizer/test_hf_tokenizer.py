import json

import pytest
import torch

from clipctl.errors import ClipctlError
from clipctl.tokenizer import HFTokenizer, SimpleTokenizer, build_tokenizer

pytest.importorskip("transformers")

WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "a",
    "photo",
    "of",
    "the",
    "cat",
    "dog",
    ".",
    "big",
    "!",
]


@pytest.fixture
def bert_dir(tmp_path):
    """A tiny local WordPiece tokenizer, so no download is needed."""
    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512})
    )
    return folder


@pytest.fixture
def offline_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))


def test_pads_truncates_and_cleans(bert_dir):
    tok = HFTokenizer(str(bert_dir), context_length=8)
    ids = tok(["  a   photo of the  cat. ", "a big big big big big big big dog"])
    vocab = {w: i for i, w in enumerate(WORDS)}
    expected = [vocab[w] for w in ["[CLS]", "a", "photo", "of", "the", "cat", ".", "[SEP]"]]
    assert ids.shape == (2, 8) and ids[0].tolist() == expected
    assert ids[1, -1] == vocab["[SEP]"]
    assert tok("a cat", context_length=6).tolist() == [[2, 5, 9, 3, 0, 0]]


def test_strip_sep_token_replaces_sep_with_padding(bert_dir):
    ids = HFTokenizer(str(bert_dir), context_length=6, strip_sep_token=True)("a cat")
    assert ids.tolist() == [[2, 5, 9, 0, 0, 0]]


def test_matches_openclip_hf_tokenizer(bert_dir):
    open_clip = pytest.importorskip("open_clip")
    texts = ["a photo of the cat.", "The DOG!", "", "a " * 40]
    clips = {"tokenizer_mode": "clips", "bos_token": "[MASK]", "eos_token": "[SEP]"}
    for kwargs in ({}, {"clean": "canonicalize", "strip_sep_token": True}, clips):
        ours = HFTokenizer(str(bert_dir), context_length=12, **kwargs)(texts)
        ref = open_clip.tokenizer.HFTokenizer(str(bert_dir), context_length=12, **kwargs)(texts)
        assert torch.equal(ours, ref), kwargs


def test_not_cached_and_offline_names_the_repo(offline_empty_cache):
    with pytest.raises(
        ClipctlError, match="tokenizer nobody/no-such-tokenizer is not in the local Hugging Face cache"
    ):
        build_tokenizer({"hf_tokenizer_name": "nobody/no-such-tokenizer"})


def test_build_tokenizer_picks_hf_and_merges_kwargs(bert_dir):
    text_cfg = {
        "hf_tokenizer_name": "ignored/when-source-given",
        "context_length": 9,
        "tokenizer_kwargs": {"clean": "canonicalize"},
    }
    tok = build_tokenizer(text_cfg, tokenizer_source=bert_dir, strip_sep_token=True)
    assert isinstance(tok, HFTokenizer) and tok.context_length == 9 and tok.strip_sep_token
    assert tok("The_cat!").tolist() == [[2, 8, 9, 0, 0, 0, 0, 0, 0]]
    assert text_cfg["tokenizer_kwargs"] == {"clean": "canonicalize"}


def test_build_tokenizer_defaults_to_clip_bpe():
    tok = build_tokenizer({"context_length": 76})
    assert isinstance(tok, SimpleTokenizer) and tok.context_length == 76
    assert build_tokenizer({}, context_length=32).context_length == 32
    assert build_tokenizer({"tokenizer_kwargs": {"clean": "whitespace"}}).clean == "whitespace"


def test_clips_mode_needs_bos_and_eos(bert_dir):
    with pytest.raises(ClipctlError, match="bos and eos"):
        HFTokenizer(str(bert_dir), context_length=8, tokenizer_mode="clips")("a cat")
