"""CoCa caption generation without `transformers`: beam search, top-k and top-p sampling."""

from __future__ import annotations

import pytest
import torch

from clipctl.errors import ClipctlError
from clipctl.models import build_model_from_config
from clipctl.models.generation import apply_repetition_penalty, apply_top_k, apply_top_p

SOT, EOS, PAD, VOCAB = 498, 499, 0, 500


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small ops on a shared machine run many times faster on one thread than with OpenMP spinning on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def coca() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = {
        "embed_dim": 32,
        "custom_text": True,
        "vision_cfg": {
            "image_size": 32,
            "patch_size": 8,
            "layers": 1,
            "width": 32,
            "head_width": 16,
            "attentional_pool": True,
            "attn_pooler_heads": 2,
            "attn_pooler_queries": 5,
            "output_tokens": True,
        },
        "text_cfg": {
            "context_length": 20,
            "vocab_size": VOCAB,
            "width": 32,
            "heads": 2,
            "layers": 1,
            "embed_cls": True,
            "output_tokens": True,
        },
        "multimodal_cfg": {"context_length": 20, "vocab_size": VOCAB, "width": 32, "heads": 2, "layers": 1},
    }
    model = build_model_from_config(cfg).eval()
    model.clipctl_test_cfg = cfg
    return model


def check_captions(out: torch.Tensor, batch: int, seq_len: int) -> None:
    assert out.dtype == torch.long and out.dim() == 2 and out.shape[0] == batch
    assert 2 <= out.shape[1] <= seq_len
    assert (out[:, 0] == SOT).all()
    assert ((out >= 0) & (out < VOCAB)).all()
    for row in out.tolist():
        if EOS in row:
            after = row[row.index(EOS) + 1 :]
            assert all(t == PAD for t in after), row
        else:
            assert len(row) == seq_len


@pytest.mark.parametrize("generation_type", ["beam_search", "top_k", "top_p"])
def test_generate_returns_valid_token_sequences(coca: torch.nn.Module, generation_type: str) -> None:
    torch.manual_seed(1)
    image = torch.randn(2, 3, 32, 32)
    out = coca.generate(
        image,
        generation_type=generation_type,
        seq_len=10,
        min_seq_len=3,
        top_k=5,
        top_p=0.9,
        num_beams=4,
        num_beam_groups=2,
        sot_token_id=SOT,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    check_captions(out, 2, 10)
    # min length bans EOS before position min_seq_len
    for row in out.tolist():
        if EOS in row:
            assert row.index(EOS) >= 3


def test_fixed_output_length_pads_to_seq_len(coca: torch.nn.Module) -> None:
    image = torch.randn(2, 3, 32, 32)
    for generation_type in ("beam_search", "top_k"):
        out = coca.generate(
            image,
            generation_type=generation_type,
            seq_len=12,
            min_seq_len=2,
            num_beams=2,
            num_beam_groups=1,
            sot_token_id=SOT,
            eos_token_id=EOS,
            fixed_output_length=True,
        )
        assert out.shape == (2, 12)


def test_top_k_one_equals_greedy_argmax_decoding(coca: torch.nn.Module) -> None:
    torch.manual_seed(2)
    image = torch.randn(2, 3, 32, 32)
    seq_len, min_len = 8, 3
    out = coca.generate(
        image,
        generation_type="top_k",
        top_k=1,
        seq_len=seq_len,
        min_seq_len=min_len,
        sot_token_id=SOT,
        eos_token_id=EOS,
    )
    with torch.no_grad():
        latent, embs = coca._encode_image(image)
        for b in range(2):
            tokens = torch.tensor([[SOT]])
            while tokens.shape[1] < seq_len and tokens[0, -1] != EOS:
                logits = coca(None, tokens, latent[b : b + 1], embs[b : b + 1], output_labels=False)[
                    "logits"
                ][0, -1]
                if tokens.shape[1] < min_len:
                    logits[EOS] = float("-inf")
                nxt = EOS if tokens.shape[1] + 1 == seq_len else int(logits.argmax())
                tokens = torch.cat([tokens, torch.tensor([[nxt]])], dim=1)
            greedy = tokens[0].tolist()
            assert out[b, : len(greedy)].tolist() == greedy
            assert all(t == PAD for t in out[b, len(greedy) :].tolist())


def test_sampling_continues_a_given_prompt(coca: torch.nn.Module) -> None:
    prompt = torch.tensor([SOT, 5, 6])
    out = coca.generate(
        torch.randn(1, 3, 32, 32), text=prompt, generation_type="top_p", seq_len=9, eos_token_id=EOS
    )
    assert out.dim() == 1 and out[:3].tolist() == prompt.tolist() and len(out) <= 9


def test_generate_rejects_bad_arguments(coca: torch.nn.Module) -> None:
    image = torch.randn(1, 3, 32, 32)
    with pytest.raises(ClipctlError, match="generation_type"):
        coca.generate(image, generation_type="nucleus")
    with pytest.raises(ClipctlError, match="min_seq_len"):
        coca.generate(image, seq_len=4, min_seq_len=5)
    with pytest.raises(ClipctlError, match="divisible"):
        coca.generate(image, num_beams=5, num_beam_groups=2)


def test_logit_processors() -> None:
    scores = torch.tensor([[1.0, 3.0, 2.0, -1.0]])
    assert torch.isinf(apply_top_k(scores, 2)).tolist() == [[True, False, False, True]]
    assert torch.isfinite(apply_top_p(scores, 0.5)).sum() == 1  # the top token already holds > half the mass
    assert torch.isfinite(apply_top_p(scores, 0.99)).sum() >= 3
    penalised = apply_repetition_penalty(scores, torch.tensor([[1, 3]]), 2.0)
    assert penalised.tolist() == [[1.0, 1.5, 2.0, -2.0]]


@pytest.fixture
def openclip_sampling(monkeypatch: pytest.MonkeyPatch):
    """OpenCLIP 3.3's CoCa whose sampling path runs with transformers 5.

    OpenCLIP imports `BeamSearchScorer`, which transformers 5 removed, and then disables `generate` altogether;
    the logit processors its top-k/top-p path uses still exist, so they are handed back to it here.
    """
    transformers = pytest.importorskip("transformers")
    coca_module = pytest.importorskip("open_clip.coca_model")
    for name in (
        "LogitsProcessorList",
        "MinLengthLogitsProcessor",
        "RepetitionPenaltyLogitsProcessor",
        "TopKLogitsWarper",
        "TopPLogitsWarper",
        "MaxLengthCriteria",
        "StoppingCriteriaList",
    ):
        monkeypatch.setattr(coca_module, name, getattr(transformers, name), raising=False)
    monkeypatch.setattr(coca_module, "_has_transformers", True)
    monkeypatch.setitem(coca_module.GENERATION_TYPES, "top_k", transformers.TopKLogitsWarper)
    monkeypatch.setitem(coca_module.GENERATION_TYPES, "top_p", transformers.TopPLogitsWarper)
    return coca_module


@pytest.mark.parametrize(
    "options",
    [
        {"generation_type": "top_k", "top_k": 1},  # greedy
        {"generation_type": "top_k", "top_k": 5},
        {"generation_type": "top_p", "top_p": 0.9},
        {"generation_type": "top_p", "top_p": 0.5, "temperature": 0.7, "repetition_penalty": 1.3},
        {"generation_type": "top_k", "top_k": 3, "fixed_output_length": True},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_sampling_matches_openclip_generate_with_the_same_seed(
    coca: torch.nn.Module, openclip_sampling, options: dict
) -> None:
    cfg = {k: v for k, v in coca.clipctl_test_cfg.items() if k not in ("custom_text", "multimodal_cfg")}
    ref = openclip_sampling.CoCa(multimodal_cfg=coca.clipctl_test_cfg["multimodal_cfg"], **cfg).eval()
    ref.load_state_dict(coca.state_dict(), strict=True)
    image = torch.randn(3, 3, 32, 32) * 3
    outputs = []
    for model in (ref, coca):
        torch.manual_seed(5)
        outputs.append(
            model.generate(
                image,
                seq_len=12,
                min_seq_len=3,
                sot_token_id=SOT,
                eos_token_id=EOS,
                pad_token_id=PAD,
                **options,
            )
        )
    assert torch.equal(outputs[1], outputs[0])


def test_beam_search_scores_hypotheses_as_hugging_face_does() -> None:
    """A scripted decoder where the two ways of normalising by length pick different captions.

    Hugging Face's BeamSearchScorer (which OpenCLIP's beam search drives; transformers 5 no longer has it, so it
    cannot run here) divides a beam ended by EOS by its length including the EOS, and an open beam by its
    length. Step by step, two beams, scores are summed raw logits:
      [SOT] -> EOS 4.0: finished [SOT], 4.0 / 2 = 2.0; beams [SOT a] (3.0) and [SOT b] (0.0)
      [SOT a] -> EOS +3.5: finished [SOT a], 6.5 / 3 = 2.17, the best; dividing by the stored length instead
      (4.0 / 1 against 6.5 / 2) would pick [SOT].
    """
    from clipctl.models.generation import beam_search

    pad, sot, eos, a, b = 0, 1, 2, 3, 4
    table = {(sot,): {eos: 4.0, a: 3.0, b: 0.0}, (sot, a): {eos: 3.5, a: 1.0}, (sot, b): {a: 0.0}}

    def next_logits(tokens: torch.Tensor) -> torch.Tensor:
        logits = torch.full((tokens.shape[0], 5), -100.0)
        for row, seq in enumerate(tokens.tolist()):
            for token, value in table.get(tuple(seq), {a: 1.0}).items():
                logits[row, token] = value
        return logits

    out = beam_search(
        next_logits,
        batch_size=1,
        num_beams=2,
        num_beam_groups=1,
        sot_token_id=sot,
        eos_token_id=eos,
        pad_token_id=pad,
        max_length=4,
        min_length=0,
    )
    assert out.tolist() == [[sot, a, eos]]
