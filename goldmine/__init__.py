"""goldmine: from raw data to a served large model, and whether it pays.

The Python API mirrors the command line; each function takes the command's config dataclass
and/or keyword overrides and returns the same dict the command prints with --json:

    goldmine.sample_data(out, seed, scale)      goldmine data sample
    goldmine.prepare_dataset(cfg)               goldmine data prepare
    goldmine.train_tokenizer(cfg)               goldmine tokenizer train
    goldmine.tokenize_corpus(cfg)               goldmine data tokenize
    goldmine.pretrain(cfg, **overrides)         goldmine pretrain
    goldmine.finetune_classify(cfg, **overrides)  goldmine finetune classify
    goldmine.finetune_sft(cfg, **overrides)     goldmine finetune sft
    goldmine.evaluate(cfg, **overrides)         goldmine evaluate (classifier, GPT, chat, --folds)
    goldmine.predict(cfg, **overrides)          goldmine predict
    goldmine.compare(cfg, **overrides)          goldmine compare (is the bigger classifier worth it?)
    goldmine.generate_text(cfg, **overrides)    goldmine generate
    goldmine.quickstart(cfg, **overrides)       goldmine quickstart
    goldmine.load(ref) -> (model, tokenizer, checkpoint dir)
    goldmine.generate(model, tokenizer, prompt, **sampling) -> str
    goldmine.answer(model, tokenizer, messages, **sampling) -> str   (chat models)
    goldmine.Registry()                         goldmine runs ...
    goldmine.cost_train(cfg, **overrides)       goldmine cost train (also cost_optimal,
                                                cost_memory, cost_serve, cost_plan)

Imports are lazy, so `import goldmine` stays fast.
"""

__version__ = "0.1.0"

_API = {
    "sample_data": ("goldmine.data.sample", "generate_sample_data"),
    "prepare_dataset": ("goldmine.data.prepare", "prepare_dataset"),
    "PrepareConfig": ("goldmine.config", "PrepareConfig"),
    "train_tokenizer": ("goldmine.tokenizer", "train_tokenizer"),
    "Tokenizer": ("goldmine.tokenizer", "Tokenizer"),
    "tokenize_corpus": ("goldmine.data.shards", "tokenize_corpus"),
    "TokenShards": ("goldmine.data.shards", "TokenShards"),
    "pretrain": ("goldmine.train.pretrain", "pretrain"),
    "finetune_classify": ("goldmine.train.finetune_classify", "finetune_classify"),
    "finetune_sft": ("goldmine.train.finetune_sft", "finetune_sft"),
    "evaluate": ("goldmine.eval", "evaluate"),
    "evaluate_classifier": ("goldmine.eval.classify", "evaluate_classifier"),
    "evaluate_lm": ("goldmine.eval.lm", "evaluate_lm"),
    "cross_validate": ("goldmine.eval.crossval", "cross_validate"),
    "predict": ("goldmine.predict", "predict"),
    "compare": ("goldmine.eval.compare", "compare"),
    "Classifier": ("goldmine.classifier", "Classifier"),
    "generate_text": ("goldmine.generate", "generate_text"),
    "generate": ("goldmine.generate", "generate"),
    "answer": ("goldmine.generate", "answer"),
    "quickstart": ("goldmine.quickstart", "quickstart"),
    "load": ("goldmine.checkpoint", "load_model"),
    "GPT": ("goldmine.model", "GPT"),
    "GPTConfig": ("goldmine.model", "GPTConfig"),
    "LSTM": ("goldmine.lstm", "LSTM"),
    "LSTMConfig": ("goldmine.lstm", "LSTMConfig"),
    "Registry": ("goldmine.registry", "Registry"),
    "cost_train": ("goldmine.cost.command", "cost_train"),
    "cost_optimal": ("goldmine.cost.command", "cost_optimal"),
    "cost_memory": ("goldmine.cost.command", "cost_memory"),
    "cost_serve": ("goldmine.cost.command", "cost_serve"),
    "cost_plan": ("goldmine.cost.command", "cost_plan"),
}
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'goldmine' has no attribute {name!r}")
