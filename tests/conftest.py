import os

# Nothing downloads at test time; runs go to a per-test home (see the `home` fixture).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Every test gets its own GOLDMINE_HOME (registry database and run directories)."""
    h = tmp_path / "goldmine-home"
    monkeypatch.setenv("GOLDMINE_HOME", str(h))
    return h


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """Sample corpus, a 512-token BPE tokenizer and token shards, built once per session.

    Built through the public API, under a session-wide GOLDMINE_HOME of its own.
    """
    from goldmine.config import TokenizeConfig, TokenizerConfig
    from goldmine.data.sample import generate_sample_data
    from goldmine.data.shards import tokenize_corpus
    from goldmine.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("workspace")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        sample = generate_sample_data(root / "sample", seed=0, scale=0.1)
        corpus = sample["files"]["corpus.txt"]["path"]
        tok = train_tokenizer(TokenizerConfig(inputs=[corpus], vocab_size=512, out=str(root / "tok")))
        shards = tokenize_corpus(TokenizeConfig(inputs=[corpus], tokenizer=tok["tokenizer"],
                                                out=str(root / "shards")))
    return {"root": root, "corpus": corpus, "tokenizer": tok["tokenizer"],
            "shards": shards["out"], "sample": sample}


@pytest.fixture(scope="session")
def gpt_run(workspace, tmp_path_factory):
    """A tiny GPT (context 256) pretrained a few steps on the sample corpus, and a chat dataset
    prepared from the sample support conversations: what `finetune sft` starts from."""
    from goldmine.data.prepare import prepare_dataset
    from goldmine.train.pretrain import pretrain

    root = tmp_path_factory.mktemp("gpt-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        res = pretrain(data=workspace["shards"], model="test", block_size=256, batch_size=4,
                       max_steps=20, eval_every=0, learning_rate=3e-3, warmup_steps=2,
                       out=str(root / "pretrain"))
        support = workspace["sample"]["files"]["support.jsonl"]["path"]
        prepare_dataset(inputs=[support], kind="chat", out=str(root / "chats"))
    return {"run_dir": res["run_dir"], "chats": str(root / "chats"), "root": root}


@pytest.fixture(scope="session")
def tiny_bert(workspace, tmp_path_factory):
    """A tiny random BERT (2 layers, 32 wide) with MiniLM's WordPiece tokenizer, and the sample
    reviews prepared as a sentiment dataset: what tiny classifier runs are fine-tuned from."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from goldmine.config import PrepareConfig
    from goldmine.data.prepare import prepare_dataset
    from goldmine.hf import minilm_path

    root = tmp_path_factory.mktemp("tiny-bert")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDMINE_HOME", str(root / "home"))
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=128)).save_pretrained(root / "bert")
        tokenizer.save_pretrained(root / "bert")
        reviews = workspace["sample"]["files"]["reviews.jsonl"]["path"]
        ds = prepare_dataset(PrepareConfig.from_preset("classify").update(
            {"inputs": [reviews], "label_column": "sentiment", "out": str(root / "reviews")}))
    return {"bert": str(root / "bert"), "reviews": ds["out"]}


@pytest.fixture(scope="session")
def foreign_bpe():
    """make(texts) -> a byte-level BPE `tokenizers.Tokenizer` (vocabulary up to 300, specials
    <s> and </s>) as a Hugging Face model would ship: none of goldmine's special tokens."""

    def make(texts):
        import tokenizers

        tk = tokenizers.Tokenizer(tokenizers.models.BPE())
        tk.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = tokenizers.decoders.ByteLevel()
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<s>", "</s>"],
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
        tk.train_from_iterator(texts, trainer)
        return tk
    return make


@pytest.fixture
def tiny_hf_llama(foreign_bpe):
    """make(path, texts) -> a Llama directory as transformers writes it, with a byte-level BPE
    tokenizer (vocabulary 300) that has none of goldmine's special tokens."""

    def make(path, texts, chat_template: str | None = None):
        import json

        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        tk = foreign_bpe(texts)
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=tk.get_vocab_size(), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=128, bos_token_id=0, eos_token_id=1)
        LlamaForCausalLM(cfg).save_pretrained(path)
        tk.save(str(path / "tokenizer.json"))
        if chat_template is not None:
            (path / "tokenizer_config.json").write_text(json.dumps({
                "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                "eos_token": "</s>", "chat_template": chat_template}))
        return path
    return make
