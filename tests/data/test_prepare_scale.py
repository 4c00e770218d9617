"""Memory stays bounded: a corpus larger than the memory the command may use goes through."""

import json
import subprocess
import sys

import numpy as np
import pytest

CORPUS_MB = 300
RSS_LIMIT_MB = 200  # two thirds of the corpus: it cannot be held in memory


def write_corpus(path, mb: int) -> int:
    """Distinct ~2 KB documents of random words, one per JSONL line, with 1% exact copies."""
    rng = np.random.default_rng(0)
    vocab = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 9)))
                      for _ in range(5000)])
    rows = 0
    written = 0
    last = ""
    with open(path, "w", encoding="utf-8") as f:
        while written < mb * 1_000_000:
            if rows % 100 == 99:
                line = last  # an exact duplicate
            else:
                words = vocab[rng.integers(0, len(vocab), 350)]
                last = json.dumps({"text": " ".join(words.tolist())}) + "\n"
                line = last
            f.write(line)
            written += len(line)
            rows += 1
    return rows


@pytest.mark.slow
def test_peak_memory_stays_below_the_corpus_size(tmp_path):
    corpus = tmp_path / "big.jsonl"
    rows = write_corpus(corpus, CORPUS_MB)
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(p.stdout)\n"
        "sys.stderr.write(p.stderr[-3000:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, file=sys.stderr)\n"
        "sys.exit(p.returncode)\n")
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "goldmine", "data", "prepare",
           str(corpus), "--out", str(tmp_path / "ds"), "--workers", "2", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    peak_mb = int(p.stderr.strip().splitlines()[-1])
    res = json.loads(p.stdout)
    c = res["counts"]
    assert c["read"] == rows and c["exact_duplicates"] == rows // 100
    assert c["kept"] + c["exact_duplicates"] + c["near_duplicates"] + c["rejected"] == rows
    assert (tmp_path / "ds" / "train.jsonl").stat().st_size > 0.9 * CORPUS_MB * 1_000_000
    assert peak_mb < RSS_LIMIT_MB, f"peak RSS {peak_mb} MB for a {CORPUS_MB} MB corpus"
