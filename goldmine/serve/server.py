"""`goldmine serve`: load the models, open the key store, build the app, run uvicorn.

    models = load_models(cfg)            # {name: ServedLM | ServedEncoder | ServedClassifier}
    app = create_app(models, store, auth=cfg.auth)
    with running(app, host, port) as url: ...    # a server in a background thread (tests, quickstart)
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from goldmine.config import ServeConfig
from goldmine.errors import GoldmineError
from goldmine.serve.models import Served, ServedEncoder, ServedLM, load_served, parse_spec


def default_models() -> list[str]:
    """NAME=PATH of the latest completed chat (else pretrain) run and classify run."""
    from goldmine.registry import latest_completed

    specs = []
    lm = latest_completed("finetune sft", "pretrain")
    if lm:
        specs.append(f"{'chat' if lm['command'] == 'finetune sft' else 'gpt'}={lm['run_dir']}")
    clf = latest_completed("finetune classify")
    if clf:
        specs.append(f"classifier={clf['run_dir']}")
    return specs


def load_models(cfg: ServeConfig, on_load=None) -> dict[str, Served]:
    import torch

    from goldmine.runtime import resolve_device
    from goldmine.serve.engine import EngineConfig

    specs = list(cfg.model) or default_models()
    if not specs:
        raise GoldmineError("nothing to serve: give --model NAME=PATH (a goldmine run, a local "
                            "Hugging Face directory or 'minilm'), or train a model first "
                            "(`goldmine quickstart`)")
    device = resolve_device(cfg.device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    engine_cfg = EngineConfig(max_batch=cfg.max_batch, max_cached_tokens=cfg.max_cached_tokens,
                              prefill_chunk=cfg.prefill_chunk, max_queue=cfg.max_queue,
                              compile=cfg.compile)
    models: dict[str, Served] = {}
    for spec in specs:
        name, ref = parse_spec(spec)
        if name in models:
            raise GoldmineError(f"--model {spec!r}: the name {name!r} is used twice")
        try:
            models[name] = load_served(name, ref, device, engine_cfg, dtype)
        except GoldmineError as e:
            raise GoldmineError(f"--model {spec}: {e}") from None
        if cfg.compile and isinstance(models[name], ServedLM):
            models[name].engine.warm_up()     # compile now, not on the first request
        if on_load:
            on_load(name, models[name])
    wants_embeddings = cfg.embeddings and cfg.embeddings.lower() != "none"
    if wants_embeddings and not any(isinstance(m, ServedEncoder) for m in models.values()):
        name = "minilm" if cfg.embeddings == "minilm" else parse_spec(cfg.embeddings)[0]
        if name not in models:
            models[name] = load_served(name, cfg.embeddings, device, engine_cfg)
            if on_load:
                on_load(name, models[name])
    return models


def build_app(cfg: ServeConfig, on_load=None):
    """(app, models, store) from a config; the engines start with the app."""
    from goldmine.serve.app import create_app
    from goldmine.serve.store import ServeStore

    cfg.validate()
    store = ServeStore(cfg.db)
    models = load_models(cfg, on_load)
    app = create_app(models, store, auth=cfg.auth, default_max_tokens=cfg.default_max_tokens,
                     log_conversations=cfg.log_conversations)
    return app, models, store


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def running(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yields its base URL; stops on exit."""
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name="goldmine-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise GoldmineError(f"the server could not start on {host}:{port} (port in use?)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise GoldmineError(f"the server did not start within {timeout:.0f} s")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def serve(cfg: ServeConfig | None = None, **overrides: Any) -> None:
    """`goldmine serve`: run until Ctrl-C (or SIGTERM); the run is recorded with the requests
    and tokens it served."""
    from goldmine.progress import console, info
    from goldmine.registry import start_run
    from goldmine.runtime import tune_cpu_allocator

    cfg = (cfg or ServeConfig()).update(overrides)
    cfg.validate()
    tune_cpu_allocator()  # the engine's steps reuse freed memory instead of page-faulting it

    def loaded(name, m):
        extra = m.describe()
        info(f"loaded [bold]{name}[/bold] ({extra['kind']}) from {m.path}")

    app, models, _ = build_app(cfg, loaded)
    port = cfg.port or free_port(cfg.host)
    base = f"http://{'127.0.0.1' if cfg.host in ('0.0.0.0', '::') else cfg.host}:{port}"
    if not cfg.auth:
        console.print("[bold red]WARNING: --no-auth: every request is served without an API "
                      "key. Use this for local development only.[/bold red]")
    elif cfg.host not in ("127.0.0.1", "localhost", "::1"):
        info(f"[yellow]listening on {cfg.host}: reachable from the network; keys are "
             "required[/yellow]")
    info(f"playground  {base}/\nAPI         {base}/v1   (OpenAI-compatible)\n"
         f"metrics     {base}/metrics")
    if cfg.auth:
        info("keys        goldmine keys create --name NAME   (send as Authorization: Bearer KEY)")
    engines = [m.engine for m in models.values() if isinstance(m, ServedLM)]

    def terminate(signum, frame):  # SIGTERM (docker stop, systemd) stops as Ctrl-C does
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, terminate)
    with start_run("serve", cfg.to_dict()) as run:
        for m in models.values():
            run.add_parent_from_path(m.path)
        if engines:
            engines[0].running = True     # the app's start-up leaves this engine to us
        with running(app, cfg.host, port):
            try:
                if engines:  # HTTP in a background thread, the first engine here (Engine.run)
                    engines[0].run()
                else:
                    while True:
                        time.sleep(3600)
            except KeyboardInterrupt:
                info("stopping")
        totals = served_totals(app.state.metrics)
        run.log_metrics({**totals, "models": len(models), "url": base})
        info(f"served {totals['requests']:,} requests, {totals['prompt_tokens']:,} prompt and "
             f"{totals['completion_tokens']:,} completion tokens (run {run.id})")


def served_totals(metrics) -> dict[str, int]:
    """API requests (/v1/...) and tokens served so far, from the app's Prometheus counters."""
    out = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for family in metrics.requests.collect():
        out["requests"] += sum(int(s.value) for s in family.samples
                               if s.name.endswith("_total") and s.labels["path"].startswith("/v1/"))
    for family in metrics.tokens.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                out[s.labels["kind"] + "_tokens"] += int(s.value)
    return out
