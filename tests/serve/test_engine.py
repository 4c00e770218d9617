"""The engine: continuous batching gives each request exactly what it would get alone."""

import threading

import pytest
import torch

from goldmine.errors import GoldmineError
from goldmine.generate import SamplingParams, sample_tokens
from goldmine.model import GPT, GPTConfig
from goldmine.serve.engine import Engine, EngineConfig, Overloaded, Sampling, sample

GREEDY = dict(temperature=0.0)
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def model():
    cfg = GPTConfig(vocab_size=300, block_size=96, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)
    return GPT(cfg, seed=1).eval()


def alone(model, prompt, n):
    """Greedy tokens of one sequence through the plain KV-cache path (no engine)."""
    p = SamplingParams(max_new_tokens=n, temperature=0, top_k=None, top_p=None)
    return [int(t[0]) for t in sample_tokens(model, prompt, p)]


def prompts(n, base=5, step=7):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(3, 300, (base + step * i,), generator=g).tolist() for i in range(n)]


def test_batched_greedy_equals_each_request_alone(model):
    # more requests than slots, prompts longer than a prefill chunk: queueing, chunked and
    # batched prefill, slots reused, rows at different positions in one decode step
    ps = prompts(9)
    with Engine(model, EngineConfig(max_batch=4, prefill_chunk=16)) as e:
        reqs = [e.submit(p, Sampling(max_tokens=12 + i, **GREEDY)) for i, p in enumerate(ps)]
        outs = [list(r) for r in reqs]
    for i, (p, out, r) in enumerate(zip(ps, outs, reqs)):
        assert out == alone(model, p, 12 + i), f"request {i}"
        assert r.finish_reason == "length" and r.tokens == out


def test_requests_join_a_running_batch_and_leave_it_when_done(model):
    steps = []
    e = Engine(model, EngineConfig(max_batch=4, prefill_chunk=64),
               on_step=lambda phase, rows, tokens: steps.append((phase, rows)))
    with e:
        first_tokens = threading.Event()
        long = e.submit(prompts(1)[0], Sampling(max_tokens=60, **GREEDY),
                        on_token=lambda t: first_tokens.set())
        assert first_tokens.wait(30)
        short = e.submit(prompts(2)[1], Sampling(max_tokens=4, **GREEDY))
        assert len(list(short)) == 4
        assert long.finish_reason is None            # joined while the long one ran, done first
        assert long.wait(60) and len(long.tokens) == 60
    decode_rows = [rows for phase, rows in steps if phase == "decode"]
    assert max(decode_rows) == 2 and decode_rows[-1] == 1   # decoded together, then alone again
    assert e.batch_size == 0


def test_a_long_prompt_is_prefilled_in_chunks_between_decode_steps(model):
    steps = []
    e = Engine(model, EngineConfig(max_batch=2, prefill_chunk=8),
               on_step=lambda phase, rows, tokens: steps.append((phase, tokens)))
    with e:
        started = threading.Event()
        streaming = e.submit([5, 6, 7], Sampling(max_tokens=40, **GREEDY),
                             on_token=lambda t: started.set())
        assert started.wait(30)
        mark = len(steps)
        long_prompt = prompts(1, base=64)[0]
        late = e.submit(long_prompt, Sampling(max_tokens=3, **GREEDY))
        assert list(late) == alone(model, long_prompt, 3)
        assert streaming.wait(60)
    after = steps[mark:]
    prefills = [i for i, (phase, _) in enumerate(after) if phase == "prefill"]
    assert len(prefills) == 8 and all(tokens <= 8 for phase, tokens in after if phase == "prefill")
    # the streaming request got a decode step between every two chunks of the long prompt
    assert all(after[i + 1][0] == "decode" for i in prefills)


def test_seeded_sampling_is_reproducible_and_top_k_1_is_greedy(model):
    p = prompts(1)[0]
    with Engine(model, EngineConfig(max_batch=4)) as e:
        a = e.generate(p, Sampling(max_tokens=20, temperature=1.0, seed=7))
        b = e.generate(p, Sampling(max_tokens=20, temperature=1.0, seed=7))
        others = [e.generate(p, Sampling(max_tokens=20, temperature=1.0, seed=s))
                  for s in range(8, 12)]
        k1 = e.generate(p, Sampling(max_tokens=20, temperature=1.5, top_k=1, seed=3))
    assert a == b and any(o != a for o in others)
    assert k1 == alone(model, p, 20)


def test_sample_applies_top_k_and_top_p_per_row():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 3))
    params = [Sampling(temperature=1.0, top_k=2), Sampling(temperature=1.0, top_p=0.6),
              Sampling(temperature=0.0)]
    seen = [set(), set(), set()]
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1), None]
    for _ in range(300):
        for row, tok in enumerate(sample(logits, params, gens).tolist()):
            seen[row].add(tok)
    assert seen == [{0, 1}, {0, 1}, {0}]   # top-p 0.6 keeps 0.5 + 0.3


def test_stop_ids_end_the_answer_and_are_not_returned(model):
    p = prompts(1)[0]
    free = alone(model, p, 10)
    stop = free[4]
    with Engine(model) as e:
        r = e.submit(p, Sampling(max_tokens=10, stop_ids=(stop,), **GREEDY))
        out = list(r)
    assert out == free[:free.index(stop)] and r.finish_reason == "stop"


def test_cancel_frees_the_slot(model):
    with Engine(model, EngineConfig(max_batch=1)) as e:
        got = threading.Event()
        r = e.submit(prompts(1)[0], Sampling(max_tokens=80, **GREEDY),
                     on_token=lambda t: got.set())
        assert got.wait(30)
        r.cancel()
        nxt = e.generate([1, 2, 3], Sampling(max_tokens=3, **GREEDY))   # the only slot is free
    assert r.finish_reason == "cancelled" and len(r.tokens) < 80 and len(nxt) == 3


def test_back_pressure_queues_then_refuses_with_a_retry_delay(model):
    e = Engine(model, EngineConfig(max_batch=1, max_queue=2))   # not started: nothing drains
    e.submit([1, 2], Sampling(max_tokens=2))
    e.submit([1, 2], Sampling(max_tokens=2))
    with pytest.raises(Overloaded) as err:
        e.submit([1, 2], Sampling(max_tokens=2))
    assert err.value.retry_after >= 1 and "busy" in str(err.value)
    e.start()
    e.stop()


def test_the_token_budget_admits_what_fits_and_queues_the_rest(model):
    # 40 cached tokens at most: two requests of 12 + 16 cannot run together, both complete
    steps = []
    e = Engine(model, EngineConfig(max_batch=4, max_cached_tokens=40),
               on_step=lambda phase, rows, tokens: steps.append((phase, rows)))
    with e:
        reqs = [e.submit(p, Sampling(max_tokens=16, **GREEDY)) for p in prompts(3, base=12, step=0)]
        outs = [list(r) for r in reqs]
    assert all(len(o) == 16 for o in outs)
    assert max(rows for phase, rows in steps if phase == "decode") == 1


def test_requests_that_can_never_fit_are_refused(model):
    e = Engine(model, EngineConfig(max_cached_tokens=50))
    with pytest.raises(GoldmineError, match="context is 96 tokens"):
        e.submit(list(range(90)), Sampling(max_tokens=10))
    with pytest.raises(GoldmineError, match="max_cached_tokens"):
        e.submit(list(range(40)), Sampling(max_tokens=20))
    with pytest.raises(GoldmineError, match="empty"):
        e.submit([], Sampling(max_tokens=5))
    with pytest.raises(GoldmineError, match="top_p"):
        e.submit([1], Sampling(top_p=0.0))


def test_a_model_failure_ends_every_request_instead_of_hanging(model):
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config, self.w = model.config, torch.nn.Parameter(torch.zeros(1))

        def forward(self, idx, cache=None, last=None):
            raise RuntimeError("boom")

    e = Engine(Broken(), EngineConfig()).start()
    r = e.submit([1, 2, 3], Sampling(max_tokens=4))
    assert list(r) == [] and r.finish_reason == "error"
    e.thread.join(10)
    with pytest.raises(GoldmineError, match="engine stopped: boom"):
        e.submit([1], Sampling(max_tokens=1))


def test_an_hf_llama_directory_decodes_like_transformers_generate(tmp_path, tiny_hf_llama):
    from transformers import LlamaForCausalLM

    from goldmine.serve.models import ServedLM, load_served

    hf_dir = tiny_hf_llama(tmp_path / "llama", ["where is my order", "it shipped today"] * 30)
    served = load_served("llama", str(hf_dir), torch.device("cpu"), EngineConfig())
    assert isinstance(served, ServedLM) and served.kind == "completion"
    ref = LlamaForCausalLM.from_pretrained(hf_dir).eval()
    ids = served.tokenizer.encode("where is my")
    with torch.no_grad():
        want = ref.generate(torch.tensor([ids]), max_new_tokens=10, min_new_tokens=10,
                            do_sample=False, eos_token_id=None)[0, len(ids):].tolist()
    with served.engine as e:
        got = e.generate(ids, Sampling(max_tokens=10, **GREEDY))
    assert got == want


def test_extreme_sampling_values_neither_crash_nor_stop_the_engine(model):
    p = prompts(1)[0]
    with Engine(model) as e:
        tiny = e.generate(p, Sampling(max_tokens=8, temperature=1e-300, seed=1))
        huge_k = e.generate(p, Sampling(max_tokens=8, temperature=1.0, top_k=10**20, seed=1))
        hot = e.generate(p, Sampling(max_tokens=8, temperature=1e6, seed=1))
    assert tiny == alone(model, p, 8) and len(huge_k) == 8 and len(hot) == 8


@pytest.mark.slow
def test_a_compiled_engine_gives_the_same_tokens(model):
    ps = prompts(6)
    e = Engine(model, EngineConfig(max_batch=4, prefill_chunk=16, compile=True))
    e.warm_up()                                     # compiles before the first request
    with e:
        reqs = [e.submit(p, Sampling(max_tokens=10, **GREEDY)) for p in ps]
        outs = [list(r) for r in reqs]
    assert outs == [alone(model, p, 10) for p in ps]
