"""The feedback loop: ratings given to the server's answers become a chat dataset for SFT.

    from_feedback("feedback.jsonl", min_rating=1)
    # then: goldmine data prepare --kind chat --inputs feedback.jsonl --out fb
    #       goldmine finetune sft --data fb ...

Each rated response becomes one line

    {"messages": [...the request's messages..., {"role": "assistant", "content": ANSWER}],
     "meta": {"response_id": ..., "rating": ..., "model": ...}}

A response rated at least `min_rating` keeps the server's answer, unless the user gave a
correction. A correction is what the user wanted the answer to be, so with `use_corrections`
(the default) it replaces the answer, and a response rated *below* `min_rating` that carries a
correction is included too, with the correction as its answer: a bad answer with a good
correction is a good example. Without `use_corrections` answers are kept as the server gave them
and corrections are ignored.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from goldmine.chat import check_messages
from goldmine.errors import GoldmineError
from goldmine.files import write_text
from goldmine.serve.store import ServeStore


def from_feedback(out: str | Path, min_rating: int = 1, model: str | None = None,
                  use_corrections: bool = True, store: ServeStore | None = None) -> dict[str, Any]:
    """Write the rated responses as a JSONL chat dataset at `out`; returns a summary: path,
    conversations, corrected (answers replaced by a correction), skipped_by_rating."""
    out = Path(out)
    if out.suffix != ".jsonl":
        raise GoldmineError(f"out {out}: expected a .jsonl file name")
    own = store is None
    store = store or ServeStore()
    try:
        rows = store.feedback(model=model)
    finally:
        if own:
            store.close()
    lines, corrected, skipped = [], 0, 0
    for r in rows:
        fix = r["correction"] if use_corrections else None
        if r["rating"] < min_rating and not fix:
            skipped += 1
            continue
        corrected += fix is not None
        messages = [*r["messages"], {"role": "assistant", "content": fix or r["answer"]}]
        messages = check_messages(messages, f"feedback for response {r['response_id']}")
        meta = {"response_id": r["response_id"], "rating": r["rating"], "model": r["model"]}
        lines.append(json.dumps({"messages": messages, "meta": meta}, ensure_ascii=False) + "\n")
    if not lines:
        ratings = Counter(r["rating"] for r in rows)
        seen = ", ".join(f"{n} rated {k:+d}" for k, n in sorted(ratings.items(), reverse=True))
        for_model = f" for model {model!r}" if model else ""
        raise GoldmineError(f"no feedback{for_model} with rating >= {min_rating}; ratings so far: "
                            f"{seen or 'none (POST /v1/feedback rates a response)'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, "".join(lines))
    return {"path": str(out), "conversations": len(lines), "corrected": corrected,
            "skipped_by_rating": skipped}
