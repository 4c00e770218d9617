import pytest
import torch

from goldmine.export.llama import from_hf_state_dict, to_hf_config, to_hf_state_dict
from goldmine.model import GPT, GPTConfig, RMSNormFunction, SwiGLUFunction


def tiny(**kw):
    base = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    return GPTConfig(**{**base, **kw})


def hf_twin(model: GPT):
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(to_hf_config(model.config)).eval()
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model.state_dict(), model.config),
                                             strict=False)
    assert not unexpected
    assert all("rotary" in k or (model.config.tie_embeddings and k == "lm_head.weight")
               for k in missing), missing
    return hf


@pytest.mark.parametrize("kw", [
    {},                                                   # GQA, untied
    {"n_kv_head": 4, "tie_embeddings": True},             # multi-head, tied
    {"n_kv_head": 1, "attn_bias": True, "rope_theta": 500000.0},  # MQA with q/k/v bias
])
def test_logits_match_transformers_llama(kw):
    torch.manual_seed(0)
    model = GPT(tiny(**kw)).eval()
    if kw.get("attn_bias"):  # biases start at zero; make them matter
        for b in model.blocks:
            torch.nn.init.normal_(b.attn.wqkv.bias, std=0.5)
    hf = hf_twin(model)
    idx = torch.randint(0, 97, (3, 32))
    with torch.no_grad():
        ours = model(idx)
        theirs = hf(input_ids=idx).logits
    assert ours.shape == theirs.shape == (3, 32, 97)
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_hf_round_trip_is_exact():
    model = GPT(tiny(attn_bias=True))
    cfg = model.config
    back = from_hf_state_dict(to_hf_state_dict(model.state_dict(), cfg), cfg)
    for k, v in model.state_dict().items():
        assert torch.equal(back[k], v), k


def test_loss_is_cross_entropy_of_logits_and_ignores_minus_100():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 97, (2, 16))
    tgt = torch.randint(0, 97, (2, 16))
    tgt[:, :5] = -100
    logits = model(idx)
    ref = torch.nn.functional.cross_entropy(logits[:, 5:].reshape(-1, 97), tgt[:, 5:].reshape(-1))
    assert torch.allclose(model(idx, targets=tgt), ref, atol=1e-6)


def test_kv_cache_prefill_and_decode_match_full_forward():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache(2, 32)
        step = [model(idx[:, :7], cache=cache)]            # prefill 7
        step.append(model(idx[:, 7:12], cache=cache))      # a chunk of 5 after the cache
        for t in range(12, 20):                            # then one token at a time
            step.append(model(idx[:, t:t + 1], cache=cache))
    assert cache.pos == 20
    assert (torch.cat(step, dim=1) - full).abs().max().item() < 1e-5


def test_custom_autograd_functions_match_autograd_reference():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: RMSNormFunction.apply(x, w, 1e-5), (x, w))
    gu = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SwiGLUFunction.apply, (gu,))
    ref = torch.nn.functional.silu(gu[..., :4]) * gu[..., 4:]
    assert torch.allclose(SwiGLUFunction.apply(gu), ref)


def test_presets_build_and_param_counts():
    cfg = GPTConfig.from_preset("gpt2-124m", vocab_size=50257)
    assert cfg.intermediate_size == 2048 and cfg.tie_embeddings
    with torch.device("meta"):
        n = GPT(cfg).num_params()
    assert 120e6 < n < 130e6
    with pytest.raises(ValueError, match="unknown model preset"):
        GPTConfig.from_preset("nope")


def test_sequence_longer_than_block_size_is_rejected():
    model = GPT(tiny())
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))
