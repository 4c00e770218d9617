"""nanoGPT's CPU budget on tiny-shakespeare, character level, through goldmine's own commands.

    python bench/shakespeare_char.py --data ../shared/datasets/tiny-shakespeare/input.txt

Character tokenizer -> first 90% train / last 10% val -> 4 layers, 4 heads, 128 wide, context
64, batch 12, 2000 steps, no dropout (the `shakespeare-char` pretrain preset). Reference: nanoGPT's
README command for CPUs reaches val loss 1.886 in about 68 s on these machines. `wall_s` covers
the whole pipeline (tokenizer, shards, training with its evaluations, checkpoints). The final
validation loss is measured on `--eval-batches` random windows of the val split. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NANOGPT = {"val_loss": 1.886, "wall_s": 68}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="tiny-shakespeare input.txt")
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--eval-batches", type=int, default=200,
                    help="val batches for the final loss (nanoGPT's CPU command uses 20)")
    ap.add_argument("--home", help="GOLDMINE_HOME for the runs (default: a temporary directory)")
    args = ap.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"error: {args.data}: file not found")
    os.environ["GOLDMINE_HOME"] = args.home or tempfile.mkdtemp(prefix="goldmine-bench-")

    from goldmine.config import PretrainConfig, TokenizeConfig, TokenizerConfig
    from goldmine.data.shards import tokenize_corpus
    from goldmine.tokenizer import train_tokenizer
    from goldmine.train.pretrain import pretrain

    t0 = time.perf_counter()
    # characters seen in the text, as nanoGPT does (no byte fallback: 73 tokens, not 329)
    tok = train_tokenizer(TokenizerConfig(inputs=[args.data], char=True, byte_fallback=False))
    shards = tokenize_corpus(TokenizeConfig(inputs=[args.data], tokenizer=tok["tokenizer"],
                                            val_fraction=0.1, split="tail"))
    cfg = PretrainConfig.from_preset("shakespeare-char").update(
        {"data": shards["out"], "max_steps": args.max_steps, "eval_every": 0,
         "eval_batches": args.eval_batches})
    res = pretrain(cfg)
    wall = time.perf_counter() - t0
    print(json.dumps({
        "val_loss": round(res["val_loss"], 4),
        "wall_s": round(wall, 1),
        "params": res["params"],
        "train_s": round(res["elapsed_s"], 1),
        "steps": res["step"],
        "tokens_per_s": round(res["tokens_per_s"]),
        "vocab_size": tok["vocab_size"],
        "train_tokens": shards["train_tokens"], "val_tokens": shards["val_tokens"],
        "eval_batches": args.eval_batches,
        "nanogpt_reference": NANOGPT,
        "goal_met": res["val_loss"] <= 1.80 and wall <= NANOGPT["wall_s"],
        "run_id": res["run_id"],
    }))


if __name__ == "__main__":
    main()
