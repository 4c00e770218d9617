import pytest
import torch

from goldmine.generate import SamplingParams, _held_back, process_logits, sample_tokens
from goldmine.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32))
    return m.eval()


def run(model, prompt, use_cache, **kw):
    p = SamplingParams(**{"max_new_tokens": 30, **kw})
    return torch.stack(list(sample_tokens(model, prompt, p, use_cache=use_cache)), dim=1)


def test_cached_and_uncached_greedy_are_identical(model):
    prompt = [1, 5, 9, 3, 7]
    cached = run(model, prompt, True, temperature=0.0)
    uncached = run(model, prompt, False, temperature=0.0)
    assert cached.shape == (1, 30)
    assert torch.equal(cached, uncached)


def test_cached_and_uncached_sampling_agree_with_a_seed(model):
    a = run(model, [2, 4], True, temperature=1.0, top_k=None, top_p=None, seed=7)
    b = run(model, [2, 4], False, temperature=1.0, top_k=None, top_p=None, seed=7)
    assert torch.equal(a, b)


def test_seed_makes_sampling_reproducible_and_different_seeds_differ(model):
    a = run(model, [2, 4], True, temperature=1.5, top_k=None, top_p=None, seed=1)
    b = run(model, [2, 4], True, temperature=1.5, top_k=None, top_p=None, seed=1)
    c = run(model, [2, 4], True, temperature=1.5, top_k=None, top_p=None, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generation_stops_at_the_context_length(model):
    p = SamplingParams(max_new_tokens=500, temperature=0.0)
    out = list(sample_tokens(model, [i % 50 for i in range(60)], p))
    assert len(out) == 4  # 60 prompt tokens + 4 new = block_size 64


def test_top_k_keeps_exactly_k_tokens():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = process_logits(logits, None, SamplingParams(temperature=1.0, top_k=2, top_p=None))
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = process_logits(probs.log(), None, SamplingParams(temperature=1.0, top_k=None, top_p=0.8))
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]
    out = process_logits(probs.log(), None, SamplingParams(temperature=1.0, top_k=None, top_p=0.81))
    assert torch.isfinite(out).tolist() == [[True, True, True, False]]
    # the most likely token always survives
    out = process_logits(probs.log(), None, SamplingParams(temperature=1.0, top_k=None, top_p=0.1))
    assert torch.isfinite(out).tolist() == [[True, False, False, False]]


def test_repetition_penalty_lowers_seen_tokens_both_signs():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = process_logits(logits, torch.tensor([[0, 1]]),
                         SamplingParams(temperature=0.0, repetition_penalty=2.0))
    assert out.tolist() == [[1.0, -4.0, 1.0]]


def test_temperature_scales_logits():
    logits = torch.tensor([[2.0, 4.0]])
    out = process_logits(logits, None, SamplingParams(temperature=0.5, top_k=None, top_p=None))
    assert out.tolist() == [[4.0, 8.0]]


def test_held_back_covers_stop_prefixes_and_split_characters():
    assert _held_back("hello wor", ("world",)) == 3
    assert _held_back("hello", ("###",)) == 0
    assert _held_back("abc\ufffd", ()) == 1
