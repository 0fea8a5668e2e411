import random
import string

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from clipctl.errors import ClipctlError  # noqa: E402
from clipctl.tokenizer import SimpleTokenizer, build_tokenizer, decode, tokenize  # noqa: E402

AWKWARD_TEXTS = [
    "a photo of a cat.",
    "",
    "   ",
    "\t\n  \r\n",
    "A Photo Of A DOG!!!",
    "it's a dog's life, isn't it? we'll see, they'd've, I'm, you're",
    "it\u2019s curly \u201cquoted\u201d",
    "&amp;amp; &lt;b&gt;bold&lt;/b&gt; &quot;x&quot; &#39;y&#39; &amp;amp;amp;",
    "Tom &amp; Jerry",
    "caf\u00e9 na\u00efve \u00fcber \u00c5ngstr\u00f6m",
    "\u00e2\u0080\u0099 mojibake: caf\u00c3\u00a9 it\u00e2\u0080\u0099s \u00e2\u0080\u009cquote\u00e2\u0080\u009d",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587 \ud55c\uad6d\uc5b4",
    "emoji \U0001f431\U0001f436 \U0001f468\u200d\U0001f469\u200d\U0001f467 flags \U0001f1fa\U0001f1f8",
    "numbers 3.14159 1,000,000 2024-01-01 \u0661\u0662\u0663 \u00bd",
    "fullwidth \uff21\uff22\uff23 ligature \ufb01sh",
    "control\x00chars\x07and\x1bescape\x7f",
    "<start_of_text> and <end_of_text> inside",
    "<START_OF_TEXT> shouting <End_Of_Text>",
    "under_score snake_case_name CamelCase",
    "tabs\tand\nnewlines\n\nand  double  spaces",
    "\u0130stanbul \u00df \u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2 \u0420\u0443\u0441\u0441\u043a\u0438\u0439",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0928\u092e\u0938\u094d\u0924\u0947",
    "zero\u200bwidth\u00a0nbsp\u2028line\u2029para",
    "punctuation!?... ---- ((()))[]{}<>@#$%^&*_+=~`|\\/",
    "a " * 120,
    "supercalifragilisticexpialidocious " * 20,
    "x" * 500,
]


def _random_ascii(rng: random.Random, n: int) -> list[str]:
    alphabet = string.printable + "&;#"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return AWKWARD_TEXTS + _random_ascii(random.Random(0), 300)


@pytest.mark.parametrize("clean", ["lower", "whitespace", "canonicalize"])
@pytest.mark.parametrize("context_length", [77, 32])
def test_ids_match_openclip(corpus, clean, context_length):
    ours = SimpleTokenizer(context_length=context_length, clean=clean)
    reference = open_clip.tokenizer.SimpleTokenizer(context_length=context_length, clean=clean)
    assert torch.equal(ours(corpus), reference(corpus))


def test_model_tokenizer_matches_openclip_get_tokenizer(corpus):
    from clipctl.config.registry import get_model_config

    tokenizer = build_tokenizer(get_model_config("ViT-B-32")["text_cfg"])
    assert torch.equal(tokenizer(corpus), open_clip.get_tokenizer("ViT-B-32")(corpus))


def test_known_ids_and_layout():
    ids = tokenize("a photo of a cat.")
    assert ids.dtype == torch.long and ids.shape == (1, 77)
    assert ids[0, :9].tolist() == [49406, 320, 1125, 539, 320, 2368, 269, 49407, 0]
    tok = SimpleTokenizer()
    assert tok.vocab_size == 49408 and (tok.sot_token_id, tok.eot_token_id) == (49406, 49407)
    assert len(tok.bpe_ranks) == 48894


def test_truncation_keeps_end_token_last():
    ids = SimpleTokenizer(context_length=16)(["word " * 100, "short"])
    assert ids.shape == (2, 16)
    assert ids[0, 0] == 49406 and ids[0, -1] == 49407 and (ids[0] != 0).all()
    assert ids[1, 2] == 49407 and (ids[1, 3:] == 0).all()


def test_call_context_length_overrides_instance_default():
    assert SimpleTokenizer(context_length=77)("hi", context_length=8).shape == (1, 8)
    assert tokenize(["a", "b", "c"], context_length=5).shape == (3, 5)


def test_decode_round_trip():
    tok = SimpleTokenizer()
    text = "a photo of a caf\u00e9 with 2 cats \U0001f431 and \u65e5\u672c"
    ids = tok.encode(text)
    assert tok.decode(ids).strip() == tok.clean_fn(text)
    row = tokenize(text)[0]
    body = row[1 : int((row == 49407).nonzero()[0])]
    assert decode(body).strip() == tok.clean_fn(text)
    assert decode(row).startswith("<start_of_text>")
    ref = open_clip.tokenizer.SimpleTokenizer()
    assert tok.decode(row) == ref.decode(row.numpy())


def test_decode_rejects_unknown_id():
    with pytest.raises(ClipctlError, match="outside the vocabulary"):
        SimpleTokenizer().decode([1, 2, 999999])


def test_additional_special_tokens_get_new_ids():
    tok = SimpleTokenizer(additional_special_tokens=["<mask>"])
    ref = open_clip.tokenizer.SimpleTokenizer(additional_special_tokens=["<mask>"])
    assert tok.vocab_size == 49409
    assert torch.equal(tok(["a <mask> cat"]), ref(["a <mask> cat"]))
    assert 49408 in tok(["a <mask> cat"])[0].tolist()


def test_bad_clean_mode_and_context_length_are_clear_errors():
    with pytest.raises(ClipctlError, match="clean mode 'upper'"):
        SimpleTokenizer(clean="upper")
    with pytest.raises(ClipctlError, match="context length"):
        SimpleTokenizer(context_length=None)("hi")


def test_word_cache_gives_identical_results_when_warm():
    tok = SimpleTokenizer()
    texts = [
        f"a photo of a {w} number {i}"
        for i, w in zip(range(200), ["dog", "cat", "tree", "bus"] * 50, strict=True)
    ]
    cold = tok(texts)
    assert len(tok._cache) > 4
    assert torch.equal(cold, tok(texts))


@pytest.mark.parametrize("mode", ["simple", "random", "shuffle"])
def test_reduction_mask_keeps_sot_and_eot(mode):
    tok = SimpleTokenizer(context_length=10, reduction_mask=mode)
    full = SimpleTokenizer().encode("one two three four five six seven eight nine ten eleven twelve")
    ids = tok("one two three four five six seven eight nine ten eleven twelve")[0].tolist()
    assert ids[0] == 49406 and ids[-1] == 49407
    assert set(ids[1:-1]) <= set(full)
    assert tok("short")[0, :3].tolist() == [49406, *SimpleTokenizer().encode("short"), 49407]


def test_unknown_reduction_mask_is_clear_error():
    with pytest.raises(ClipctlError, match="reduction_mask"):
        SimpleTokenizer(reduction_mask="syntax")
