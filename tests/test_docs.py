"""Every example in README.md and docs/ runs: shell blocks in order, then Python blocks."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(sh|python)\n(.*?)```", re.S)
SKIP_README = ("make demo", "make test", "bench/")  # set-up and benchmarks run elsewhere


def blocks(page: Path) -> list[tuple[str, str]]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_examples_run(page, tmp_path, home):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "GOLDMINE_HOME": str(home), "PATH": bindir + os.pathsep + os.environ["PATH"]}
    ran = 0
    for lang, body in blocks(page):
        if lang == "sh":
            for line in body.strip().splitlines():
                cmd = line.split("#")[0].strip()
                if not cmd or any(s in cmd for s in SKIP_README):
                    continue
                p = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True,
                                   text=True, timeout=600)
                assert p.returncode == 0, f"{page.name}: `{cmd}` failed:\n{p.stderr[-2000:]}"
                ran += 1
        else:
            p = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, f"{page.name}: python example failed:\n{p.stderr[-2000:]}"
            ran += 1
    assert ran, f"{page.name} has no runnable example"
