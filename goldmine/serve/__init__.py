"""`goldmine serve`: an OpenAI-compatible HTTP API over goldmine models, with API keys, limits,
usage and a feedback loop (see engine.py, app.py and store.py)."""
