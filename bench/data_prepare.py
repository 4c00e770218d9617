"""`goldmine data prepare` on a generated messy corpus with planted duplicates and PII.

    python bench/data_prepare.py                # about 300 MB of JSONL; prints one JSON object
    python bench/data_prepare.py --mb 20        # a quick look

The generator writes English documents (Zipf-distributed words) and Chinese documents (common
characters), and plants, with a record of each:
  - exact duplicates: earlier documents again, re-cased and re-spaced;
  - near duplicates: earlier documents with one word/character in 50 to 200 edited; a pair
    counts as a planted duplicate when the true Jaccard of its shingle sets is >= 0.85 (the
    command's threshold is 0.8), as distinct (finding it is a false positive) below 0.75,
    and pairs in between are left out of the scores;
  - PII: e-mails, international/US/Chinese phones, Chinese ID numbers with valid checksums,
    Luhn-valid card numbers, IPv4/IPv6 addresses and credentials in URLs - next to decoys that
    must not be replaced: order numbers, dates, times, prices, versions, Luhn-invalid numbers
    and ID numbers with a wrong checksum.

The command runs twice in a child process (near-duplicate detection on, then exact only), so
`peak_rss_mb` is the child's own maximum resident set. Recall and precision of duplicates come
from the command's duplicates.jsonl against the planted pairs; PII recall and precision from
the detector on the documents that hold planted PII or decoys.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYLLABLES = "ka lo mi ne ru sa to vi de an el or un is at ra po li me su".split()
HAN = ("的一是不了在人有我他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学"
       "对可里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面"
       "公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情"
       "部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北")


def _vocab(rng: random.Random, n: int = 20000) -> list[str]:
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


class Corpus:
    """Random documents; Zipf-weighted words so the text looks like text to the hashers."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.words = _vocab(self.rng)
        self.weights = [1.0 / (i + 1) for i in range(len(self.words))]

    def english(self, n_words: int) -> str:
        ws = self.rng.choices(self.words, self.weights, k=n_words)
        sentences, i = [], 0
        while i < len(ws):
            k = self.rng.randint(8, 20)
            sentences.append(" ".join(ws[i:i + k]).capitalize() + ".")
            i += k
        return " ".join(sentences)

    def chinese(self, n_chars: int) -> str:
        out = []
        for i in range(n_chars):
            out.append(self.rng.choice(HAN))
            if i % 17 == 16:
                out.append("。")
        return "".join(out)

    def near_copy(self, text: str, chinese: bool) -> str:
        units = list(text) if chinese else text.split(" ")
        n_edits = max(1, len(units) // self.rng.choice([50, 80, 120, 200]))
        for _ in range(n_edits):
            i = self.rng.randrange(len(units))
            op = self.rng.random()
            if op < 0.4:
                units[i] = self.rng.choice(HAN) if chinese else self.rng.choice(self.words)
            elif op < 0.7:
                del units[i]
            else:
                units.insert(i, self.rng.choice(HAN) if chinese else self.rng.choice(self.words))
        return ("" if chinese else " ").join(units)


# -------------------------------------------------------------------------------------- PII
def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _cn_id(rng: random.Random, valid: bool = True) -> str:
    body = (f"{rng.choice(['110105', '310104', '440305', '510107'])}"
            f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            f"{rng.randint(0, 999):03d}")
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]
    if not valid:
        check = "10X98765432"[("10X98765432".index(check) + 3) % 11]
    return body + check


def pii_value(rng: random.Random, kind: str) -> str:
    if kind == "email":
        return (f"{rng.choice(['anna', 'li.wei', 'j.smith', 'zhang_san', 'ops'])}"
                f"{rng.randint(1, 999)}@{rng.choice(['example.com', 'shop.cn', 'mail.co.uk'])}")
    if kind == "phone":
        return rng.choice([f"+1 415-555-{rng.randint(1000, 9999)}",
                           f"+44 20 7946 {rng.randint(1000, 9999)}",
                           f"1{rng.choice('3589')}{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}",
                           f"({rng.randint(201, 989)}) 555-{rng.randint(1000, 9999)}",
                           f"+86 13{rng.randint(0, 9)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"])
    if kind == "cn_id":
        return _cn_id(rng)
    if kind == "card":
        prefix = rng.choice(["4", "51", "37", "62"])
        length = 15 if prefix == "37" else 16  # Amex issues 15 digits, the others 16
        body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - 1 - len(prefix)))
        number = body + _luhn_digit(body)
        if rng.random() < 0.5:
            return " ".join(number[i:i + 4] for i in range(0, len(number), 4))
        return number
    if kind == "ip":
        if rng.random() < 0.7:
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        return f"2001:db8:{rng.randint(1, 0xffff):x}::{rng.randint(1, 0xffff):x}"
    if kind == "url_credentials":
        return f"{rng.choice(['admin', 'svc'])}:{rng.choice(['hunter2', 's3cr3t!', 'pw123'])}"
    raise ValueError(kind)


def decoy(rng: random.Random) -> str:
    """Numbers that look like PII but are not."""
    bad_card = "4" + "".join(str(rng.randint(0, 9)) for _ in range(14))
    bad_card += str((int(_luhn_digit(bad_card)) + 1) % 10)
    return rng.choice([
        # order numbers start with 1 or 9, which no card network issues (a 15-digit number
        # starting with 34/37 that passes Luhn is indistinguishable from an Amex card)
        f"order {rng.choice('19')}{rng.randint(10 ** 13, 10 ** 14 - 1)}",
        f"on 2024-{rng.randint(1, 12):02d}-"
        f"{rng.randint(1, 28):02d}", f"at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
        f"{rng.randint(0, 59):02d}", f"for ${rng.randint(1, 999)},{rng.randint(100, 999)}.00",
        f"version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}",
        f"ref {bad_card}", f"id {_cn_id(rng, valid=False)}", f"zip {rng.randint(10000, 99999)}",
        f"{rng.randint(1990, 2030)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日"])


def plant_pii(rng: random.Random, text: str, kinds: list[str]) -> tuple[str, list[tuple[str, str]]]:
    planted = []
    parts = [text]
    for kind in kinds:
        value = pii_value(rng, kind)
        if kind == "url_credentials":
            parts.append(f"Connect with postgres://{value}@db.internal:5432/app now.")
        else:
            parts.append(f"Contact {value} today." if rng.random() < 0.5 else f"联系{value}谢谢")
        planted.append((kind, value))
    parts.append(f"Note {decoy(rng)} and {decoy(rng)}.")
    return " ".join(parts), planted


# --------------------------------------------------------------------------------- generate
def generate(path: Path, mb: float, seed: int) -> dict:
    """Write the corpus; return what was planted (line numbers are 1-based)."""
    c = Corpus(seed)
    rng = random.Random(seed + 1)
    target = int(mb * 1e6)
    docs: list[tuple[str, bool]] = []  # recent originals available for copying
    from goldmine.data.dedup import MinHasher

    hasher = MinHasher()
    truth = {"exact": {}, "near": {}, "ambiguous": {}, "pii": {}, "decoy_lines": []}
    written = 0
    line = 0
    kinds = ["email", "phone", "cn_id", "card", "ip", "url_credentials"]
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            line += 1
            r = rng.random()
            if docs and r < 0.03:  # exact duplicate (case and spacing changed)
                src_line, text, zh = docs[rng.randrange(len(docs))]
                out = text.upper() if not zh else f"  {text}\n"
                truth["exact"][line] = src_line
            elif docs and r < 0.06:  # near duplicate
                src_line, text, zh = docs[rng.randrange(len(docs))]
                out = c.near_copy(text, zh)
                j = jaccard(hasher, text, out)
                # a near duplicate when clearly above the 0.8 threshold, distinct (must not be
                # found) when clearly below; 0.75-0.85 is too close to call and left out
                if j >= 0.85:
                    truth["near"][line] = src_line
                elif j >= 0.75:
                    truth["ambiguous"][line] = src_line
            else:
                zh = rng.random() < 0.2
                out = c.chinese(rng.randint(300, 900)) if zh else c.english(rng.randint(200, 500))
                if rng.random() < 0.05:
                    out, planted = plant_pii(rng, out, rng.sample(kinds, rng.randint(1, 3)))
                    truth["pii"][line] = planted
                elif rng.random() < 0.03:
                    out = f"{out} Note {decoy(rng)}, {decoy(rng)} and {decoy(rng)}."
                    truth["decoy_lines"].append(line)
                else:
                    if len(docs) < 5000:
                        docs.append((line, out, zh))
                    elif rng.random() < 0.05:
                        docs[rng.randrange(len(docs))] = (line, out, zh)
            data = json.dumps({"id": line, "text": out}, ensure_ascii=False) + "\n"
            f.write(data)
            written += len(data.encode("utf-8"))
    truth["lines"] = line
    truth["bytes"] = path.stat().st_size
    return truth


def jaccard(hasher, a: str, b: str) -> float:
    """True Jaccard similarity of the two texts' shingle sets."""
    sa, sb = set(hasher.shingles(a).tolist()), set(hasher.shingles(b).tolist())
    return len(sa & sb) / max(len(sa | sb), 1)


# ------------------------------------------------------------------------------------ measure
def run_prepare(corpus: Path, out: Path, dedup: str, workers: int) -> tuple[dict, float, float]:
    """(manifest, seconds, peak RSS MB) of `goldmine data prepare` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cmd = [sys.executable, "-m", "goldmine", "data", "prepare", str(corpus), "--kind", "text",
           "--out", str(out), "--dedup", dedup, "--workers", str(workers), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: goldmine data prepare failed:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the maximum over all children so far; the exact-only run goes
    # second and is the smaller one, so each run's value is its own only for the first
    return json.loads(proc.stdout), seconds, max(peak, before) / 1024


def dup_scores(out: Path, truth: dict) -> dict:
    found = {}
    with open(out / "duplicates.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            found[d["line"]] = d
    planted = {**truth["exact"], **truth["near"]}
    for ln in truth["ambiguous"]:  # neither counted for nor against
        found.pop(ln, None)
    tp = sum(1 for ln in found if ln in planted)
    near_found = {ln for ln, d in found.items() if d["kind"] == "near"}
    near_tp = sum(1 for ln in truth["near"] if ln in found)
    return {"dup_recall": tp / max(len(planted), 1), "dup_precision": tp / max(len(found), 1),
            "near_dup_recall": near_tp / max(len(truth["near"]), 1),
            "near_dup_precision": (sum(1 for ln in near_found if ln in truth["near"])
                                   / max(len(near_found), 1)),
            "exact_dup_recall": (sum(1 for ln in truth["exact"] if ln in found)
                                 / max(len(truth["exact"]), 1)),
            "planted_exact": len(truth["exact"]), "planted_near": len(truth["near"]),
            "ambiguous_left_out": len(truth["ambiguous"])}


def pii_scores(corpus: Path, truth: dict) -> dict:
    from goldmine.data.clean import clean_text
    from goldmine.data.pii import find_pii

    wanted = set(truth["pii"]) | set(truth["decoy_lines"])
    tp = fp = planted = 0
    misses: list[str] = []
    with open(corpus, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if i not in wanted:
                continue
            text = clean_text(json.loads(line)["text"])
            expected = [(k, v) for k, v in truth["pii"].get(i, [])]
            planted += len(expected)
            found = [(m.kind, m.text) for m in find_pii(text)]
            for kind, value in found:
                hit = next((e for e in expected if e[0] == kind and (
                    value == e[1] or value.replace(" ", "") == e[1].replace(" ", ""))), None)
                if hit:
                    tp += 1
                    expected.remove(hit)
                else:
                    fp += 1
                    if len(misses) < 5:
                        misses.append(f"false positive {kind}: {value!r}")
            for kind, value in expected:
                if len(misses) < 10:
                    misses.append(f"missed {kind}: {value!r}")
    return {"pii_recall": tp / max(planted, 1), "pii_precision": tp / max(tp + fp, 1),
            "pii_planted": planted, "pii_examples": misses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=300, help="corpus size in MB (default: 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="--workers for the command")
    ap.add_argument("--dir", help="working directory (default: a temporary one, removed)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="goldmine-bench-prepare-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GOLDMINE_HOME"] = str(work / "home")
    corpus = work / "corpus.jsonl"
    t0 = time.perf_counter()
    truth = generate(corpus, args.mb, args.seed)
    gen_s = time.perf_counter() - t0
    mb = truth["bytes"] / 1e6
    near, near_s, rss_near = run_prepare(corpus, work / "near", "near", args.workers)
    exact, exact_s, _ = run_prepare(corpus, work / "exact", "exact", args.workers)
    result = {
        "mb_per_s": round(mb / near_s, 2),
        "mb_per_s_exact_only": round(mb / exact_s, 2),
        "peak_rss_mb": round(rss_near, 1),
        **{k: round(v, 4) if isinstance(v, float) else v
           for k, v in dup_scores(work / "near", truth).items()},
        **{k: round(v, 4) if isinstance(v, float) else v
           for k, v in pii_scores(corpus, truth).items()},
        "corpus_mb": round(mb, 1), "rows": truth["lines"], "workers": args.workers,
        "seconds_near": round(near_s, 1), "seconds_exact_only": round(exact_s, 1),
        "generate_s": round(gen_s, 1),
        "counts": {k: near["counts"][k] for k in ("read", "kept", "exact_duplicates",
                                                  "near_duplicates", "rejected")},
        "pii_replaced": near["counts"]["pii"],
    }
    result["goal_met"] = bool(result["near_dup_recall"] >= 0.95
                              and result["near_dup_precision"] >= 0.99
                              and result["pii_recall"] >= 0.95 and result["pii_precision"] >= 0.99)
    print(json.dumps(result))
    if not args.dir:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
