"""Models to serve, built once: a tiny chat GPT (a few `finetune sft` steps on the session's
tiny GPT), that GPT itself (completions), a tiny sentiment classifier, and the embedded MiniLM
for embeddings; and a live server on a free loopback port with an API key."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def served(gpt_run, workspace, tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from goldmine.config import PrepareConfig
    from goldmine.data.prepare import prepare_dataset
    from goldmine.hf import minilm_path
    from goldmine.train.finetune_classify import finetune_classify
    from goldmine.train.finetune_sft import finetune_sft

    root = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        chat = finetune_sft(model=gpt_run["run_dir"], data=gpt_run["chats"], max_steps=2,
                            batch_size=4, learning_rate=3e-3, eval_every=0, device="cpu")
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        bert = root / "tiny-bert"
        BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=128)).save_pretrained(bert)
        tokenizer.save_pretrained(bert)
        reviews = workspace["sample"]["files"]["reviews.jsonl"]["path"]
        ds = prepare_dataset(PrepareConfig.from_preset("classify").update(
            {"inputs": [reviews], "label_column": "sentiment", "out": str(root / "reviews")}))
        clf = finetune_classify(data=ds["out"], model=str(bert), max_steps=2, batch_size=8,
                                device="cpu")
    return {"chat": chat["run_dir"], "gpt": gpt_run["run_dir"], "classifier": clf["run_dir"],
            "encoder": str(bert), "root": root}


@pytest.fixture(scope="session")
def serve_models(served, tmp_path_factory):
    """serve_models(**ServeConfig options) -> a context manager: the app over every kind of
    model, with keys required, on 127.0.0.1:<free port>; yields what tests need of it."""
    from goldmine.config import ServeConfig
    from goldmine.serve.server import build_app, running

    @contextmanager
    def start(**options):
        db = tmp_path_factory.mktemp("serve-db") / "serve.db"
        cfg = ServeConfig(model=[f"chat={served['chat']}", f"gpt={served['gpt']}",
                                 f"sentiment={served['classifier']}"], db=str(db), device="cpu",
                          **options)
        app, models, store = build_app(cfg)
        key, _ = store.create_key("tests")
        with running(app) as url:
            yield SimpleNamespace(url=url, key=key, store=store, models=models, app=app,
                                  chat_model="chat", completion_model="gpt",
                                  classify_model="sentiment", embed_model="minilm")
    return start


@pytest.fixture(scope="session")
def live_server(serve_models):
    with serve_models(max_batch=8, default_max_tokens=32) as server:
        yield server
