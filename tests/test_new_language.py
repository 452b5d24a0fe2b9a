"""Adding a language is adding files, no code: every file that defines ``ita`` copied to ``xyz`` in
a copy of configs/ (ZAGREUS_CONFIGS) is enough for stages 01-02 of the smoke profile."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from zagreus_utils.pipeline import paths

NEW = "xyz"


def _language_files(configs: Path, code: str) -> list[Path]:
    """Every config file that belongs to one language: ``<code>.yaml`` or ``*_<code>.yaml``."""
    return sorted(p for p in configs.rglob("*.yaml") if re.fullmatch(rf"(.*_)?{code}", p.stem))


def test_a_language_copied_from_ita_runs_stages_01_02(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(paths.CONFIGS, configs)
    copied = _language_files(configs, "ita")
    assert {p.parent.name for p in copied} >= {"languages", "sample_corpus", "lm_eval"}
    for path in copied:
        target = path.with_name(path.name.replace("ita", NEW))
        text = path.read_text(encoding="utf-8")
        if path.parent.name != "sample_corpus":  # a sample-corpus file names no code, only its grammar family
            text = re.sub(r"\bita\b", NEW, text)
        target.write_text(text, encoding="utf-8")

    env = dict(os.environ, ZAGREUS_CONFIGS=str(configs), ZAGREUS_RUNS=str(tmp_path / "runs"),
               PYTHONPATH=os.pathsep.join([str(paths.REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    cmd = [sys.executable, "-m", "zagreus_utils.cli", "run", "--profile", "smoke", "--languages", NEW,
           "--stages", "data", "tokenization", "--no-report"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    run = tmp_path / "runs" / "smoke" / NEW
    for stage in ("01_data", "02_tokenization"):
        manifest = json.loads((run / stage / "manifest.json").read_text())
        assert manifest["status"] == "ok", (stage, manifest.get("error"))
    data = json.loads((run / "01_data" / "manifest.json").read_text())
    assert f"sample_corpus/{NEW}.yaml" in data["inputs"]["configs"], "stage 01 records the facts it read"
    rows = pq.read_table(sorted((run / "01_data" / "raw" / "sources" / "fineweb2").glob("*.parquet"))[0]).to_pylist()
    assert rows and {r["lang"] for r in rows} == {NEW}
    token_files = list((run / "02_tokenization").rglob("*.ds"))
    assert token_files and all(p.stat().st_size > 0 for p in token_files)
