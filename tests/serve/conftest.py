"""Models to serve, built once: a tiny chat GPT (a few `finetune sft` steps on the session's
tiny GPT), that GPT itself (completions), a tiny sentiment classifier, and the embedded MiniLM
for embeddings; and a live server on a free loopback port with an API key."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def served(gpt_run, tiny_bert, tmp_path_factory):
    from goldmine.train.finetune_classify import finetune_classify
    from goldmine.train.finetune_sft import finetune_sft

    root = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        chat = finetune_sft(model=gpt_run["run_dir"], data=gpt_run["chats"], max_steps=2,
                            batch_size=4, learning_rate=3e-3, eval_every=0, device="cpu")
        clf = finetune_classify(data=tiny_bert["reviews"], model=tiny_bert["bert"],
                                max_steps=2, batch_size=8, device="cpu")
    return {"chat": chat["run_dir"], "gpt": gpt_run["run_dir"], "classifier": clf["run_dir"],
            "encoder": tiny_bert["bert"], "root": root}


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
