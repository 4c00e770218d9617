"""ONNX export: a tiny goldmine GPT and a tiny BERT classifier, run in ONNX Runtime on shapes
other than the export example and compared with PyTorch; the graph's axes are symbolic; failures
are GoldmineErrors that name the model."""

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from goldmine.errors import GoldmineError  # noqa: E402
from goldmine.export import onnx as onnx_export  # noqa: E402
from goldmine.export.onnx import export_classifier_onnx, export_gpt_onnx  # noqa: E402
from goldmine.model import GPT, GPTConfig  # noqa: E402

VOCAB = 97
TEXTS = [
    "great scarf, very warm",
    "the invoice was wrong twice and nobody answered my emails",
    "ok",
    "I love it, I would buy it again for my whole family",
    "broken on arrival",
]


def tiny_gpt(**overrides) -> GPT:
    cfg = GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                    block_size=64, **overrides)
    model = GPT(cfg, seed=0)
    # larger weights than the init (std 0.02) so logits are O(1) and every part shows in them
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5, generator=gen)
            else:
                p.normal_(0.0, 0.3, generator=gen)
    return model


def ort_session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("overrides", [
    {},
    # q/k/v biases (Qwen2-style) and a head tied to the embedding, in one export
    pytest.param({"attn_bias": True, "tie_embeddings": True}, marks=pytest.mark.slow),
], ids=["plain", "bias-tied"])
def test_gpt_export_matches_pytorch(tmp_path, overrides, capfd):
    model = tiny_gpt(**overrides).train()   # export must not depend on (or change) the mode
    capfd.readouterr()
    result = export_gpt_onnx(model, tmp_path)
    assert capfd.readouterr() == ("", "")   # the exporter's chatter is kept for failures only

    assert model.training
    assert result["files"] == ["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert result["checks"]["onnx_opset"] == 18
    assert 0 <= result["checks"]["onnx_max_abs_diff"] <= 1e-4

    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids"]
    assert [o.name for o in graph.output] == ["logits"]
    (inp,), (out,) = graph.input, graph.output
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    batch, seq = dims(inp)
    assert isinstance(batch, str) and isinstance(seq, str) and batch != seq
    assert dims(out) == [batch, seq, VOCAB]

    session = ort_session(tmp_path / "model.onnx")
    model.eval()
    gen = torch.Generator().manual_seed(7)
    for shape in [(3, 17), (1, 64), (4, 1)]:   # the export example was (2, 8)
        ids = torch.randint(0, VOCAB, shape, generator=gen)
        with torch.no_grad():
            expected = model(ids).numpy()
        assert expected.std() > 0.5                       # logits that carry information
        (got,) = session.run(["logits"], {"input_ids": ids.numpy()})
        assert got.shape == (*shape, VOCAB)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_gpt_wrong_rotary_layout_is_caught(tmp_path, monkeypatch):
    """The rewritten forward is checked against GPT.forward: Hugging Face's 'rotate half' pairs
    (i, i + D/2) instead of goldmine's adjacent pairs must fail, before anything is written."""

    def rotate_half(x, cos, sin):
        x1, x2 = x.chunk(2, dim=-1)
        c, s = cos[:, None, :], sin[:, None, :]
        return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)

    monkeypatch.setattr(onnx_export._OnnxGPT, "_rope", staticmethod(rotate_half))
    with pytest.raises(GoldmineError, match="GPT .*differ"):
        export_gpt_onnx(tiny_gpt(), tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_unsupported_op_is_a_goldmine_error(tmp_path):
    class Zeta(torch.nn.Module):          # prims.zeta has no ONNX function
        def forward(self, input_ids):
            x = input_ids.float()
            return torch.special.zeta(x + 2, x + 1)

    seq = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    with pytest.raises(GoldmineError, match=r"tiny zeta model: ONNX export .*failed: .*zeta"):
        onnx_export._export(Zeta(), (torch.randint(0, 5, (2, 8)),), tmp_path / "model.onnx",
                            18, "tiny zeta model", input_names=["input_ids"],
                            dynamic_shapes={"input_ids": seq})


def test_onnxruntime_failure_is_a_goldmine_error(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(GoldmineError, match="GPT x: ONNX Runtime could not run"):
        onnx_export._run_ort(tmp_path / "model.onnx", {"input_ids": np.zeros((1, 2), np.int64)},
                             "GPT x")


# ---------------------------------------------------------------------------------------------
# Hugging Face classifier


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BERT sequence classifier directory, as `finetune classify` leaves it."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from goldmine.files import write_json
    from goldmine.hf import minilm_path

    path = tmp_path_factory.mktemp("onnx") / "model"
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    labels = ["negative", "neutral", "positive"]
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=3, initializer_range=0.3,
        id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)}))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    write_json(path / "goldmine.json", {"task": "classify", "labels": labels})
    return path


@pytest.mark.slow
def test_classifier_export_matches_transformers(bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    result = export_classifier_onnx(bert_dir, tmp_path)
    assert result["files"] == ["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert 0 <= result["checks"]["onnx_max_abs_diff"] <= 1e-4
    assert result["checks"]["onnx_opset"] == 18

    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    names = [i.name for i in graph.input]
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
    batch, seq = dims(graph.input[0])
    assert isinstance(batch, str) and isinstance(seq, str) and batch != seq
    assert all(dims(i) == [batch, seq] for i in graph.input)
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in graph.input)
    assert [o.name for o in graph.output] == ["logits"]
    assert dims(graph.output[0]) == [batch, 3]

    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    model = AutoModelForSequenceClassification.from_pretrained(bert_dir).eval()
    session = ort_session(tmp_path / "model.onnx")
    for texts in (TEXTS[:2], TEXTS):          # two padded shapes, real attention masks
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        assert (enc["attention_mask"] == 0).any()
        with torch.no_grad():
            expected = model(**enc).logits.numpy()
        assert expected.std() > 0.05
        (got,) = session.run(["logits"], {n: enc[n].numpy() for n in names})
        assert got.shape == (len(texts), 3)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_classifier_invalid_dir_is_a_goldmine_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(GoldmineError, match="no config.json"):
        export_classifier_onnx(tmp_path / "missing", out)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"}')   # no weights, no tokenizer
    with pytest.raises(GoldmineError, match=r"broken: cannot load a sequence classifier"):
        export_classifier_onnx(broken, out)
    assert not list(out.iterdir())
