"""The BERT-style encoder (goldmine/encoder.py): its state dict is transformers'
BertForMaskedLM's, so the directory it saves loads there with the same logits."""

import pytest
import torch
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

from goldmine import cost
from goldmine.checkpoint import model_tensors
from goldmine.encoder import Encoder, EncoderConfig, save_hf


def tiny(**kw) -> EncoderConfig:
    return EncoderConfig(**{"vocab_size": 120, "block_size": 24, "n_layer": 2, "n_head": 2,
                            "n_embd": 32, **kw})


class FakeTokenizer:
    """What save_hf asks of a tokenizer (goldmine.data.mlm.MLMTokenizer is tested there)."""

    def save_hf(self, directory, model_max_length):
        self.saved = (directory, model_max_length)


def perturbed(cfg: EncoderConfig) -> Encoder:
    """A seeded encoder with every weight moved off its initial value (LayerNorms and biases
    included), so that a wrongly mapped tensor shows in the logits."""
    model = Encoder(cfg, seed=0).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def saved_as_hf(model: Encoder, tmp_path):
    weights = tmp_path / "weights.safetensors"
    save_file(model_tensors(model), weights, metadata={"format": "pt"})
    return save_hf(model.config, weights, FakeTokenizer(), tmp_path / "hf")


def test_transformers_loads_it_with_the_same_logits_and_loss(tmp_path):
    from transformers import AutoModelForMaskedLM, BertForMaskedLM

    model = perturbed(tiny())
    hf = AutoModelForMaskedLM.from_pretrained(saved_as_hf(model, tmp_path)).eval()
    assert isinstance(hf, BertForMaskedLM)
    assert set(model.state_dict()) | {"cls.predictions.decoder.weight",
                                      "cls.predictions.decoder.bias"} == set(hf.state_dict())
    g = torch.Generator().manual_seed(2)
    idx = torch.randint(5, 120, (3, 20), generator=g)
    mask = torch.ones_like(idx)
    mask[1, 13:] = 0                                   # a padded row
    idx[1, 13:] = 0
    types = torch.zeros_like(idx)
    types[2, 9:] = 1                                   # a sentence pair
    with torch.no_grad():
        ours = model(idx, attention_mask=mask, token_type_ids=types)
        theirs = hf(input_ids=idx, attention_mask=mask, token_type_ids=types).logits
        assert ours.shape == (3, 20, 120)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        targets = torch.full_like(idx, -100)
        targets[:, 4] = idx[:, 4]
        targets[0, 11] = idx[0, 11]
        loss = model(idx, targets=targets, attention_mask=mask, token_type_ids=types)
        ref = hf(input_ids=idx, attention_mask=mask, token_type_ids=types, labels=targets).loss
        assert loss.item() == pytest.approx(ref.item(), abs=1e-5)


def test_sequence_classification_loads_it_with_a_new_head(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from goldmine.hf import quiet_transformers

    model = perturbed(tiny())
    with quiet_transformers():
        clf = AutoModelForSequenceClassification.from_pretrained(saved_as_hf(model, tmp_path),
                                                                 num_labels=3)
    emb = clf.bert.embeddings.word_embeddings.weight
    assert torch.equal(emb, model.bert.embeddings.word_embeddings.weight)
    assert clf(input_ids=torch.randint(5, 120, (2, 10))).logits.shape == (2, 3)


def test_init_is_seeded_and_bert_like():
    a, b = Encoder(tiny(), seed=3), Encoder(tiny(), seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    emb = a.bert.embeddings.word_embeddings.weight
    assert emb[0].abs().sum() == 0 and 0.015 < emb[1:].std() < 0.025   # [PAD] row zero
    ln = a.bert.encoder.layer[0].output.LayerNorm
    assert torch.all(ln.weight == 1) and torch.all(ln.bias == 0)
    assert Encoder(tiny(), seed=4).bert.embeddings.word_embeddings.weight[1:].ne(emb[1:]).any()


def test_the_head_runs_on_the_masked_positions_only():
    """The loss with targets equals cross-entropy over the full logits at those positions,
    and the FLOP count follows goldmine.cost (the head on the predicted share only)."""
    cfg = tiny(dropout=0.0)
    model = perturbed(cfg)
    idx = torch.randint(5, 120, (4, 24))
    targets = torch.full_like(idx, -100)
    targets[:, ::6] = idx[:, ::6]                       # 4 of 24 positions predicted
    with torch.no_grad():
        full = model(idx)
        want = torch.nn.functional.cross_entropy(full[targets != -100], idx[targets != -100])
        assert model(idx, targets=targets).item() == pytest.approx(want.item(), abs=1e-6)
    with FlopCounterMode(display=False) as counter:
        model(idx, targets=targets)
    # the counter sees the matmuls (not the CPU's fused attention kernel): add the attention term
    measured = counter.get_total_flops() / idx.numel() + cost.attention_flops_per_token(
        cfg.n_layer, cfg.n_embd, 24, training=False)
    assert measured == pytest.approx(cost.encoder_flops_per_token(cfg, 24, training=False,
                                                                  predicted=4 / 24))
    assert cost.flops_per_token(cfg, 24) == pytest.approx(cost.encoder_flops_per_token(cfg, 24))


def test_config_checks_and_presets():
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="block_size"):
        EncoderConfig(block_size=0)
    cfg = EncoderConfig.from_preset("mini", vocab_size=500, n_layer=3)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.intermediate_size) == (3, 4, 256, 1024)
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["arch"] == "bert"
    with pytest.raises(ValueError, match="longer than block_size"):
        Encoder(tiny())(torch.zeros(1, 25, dtype=torch.long))
