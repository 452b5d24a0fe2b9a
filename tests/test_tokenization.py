"""Stage 02 (zagreus_utils.stages.tokenization): tokenizer, Nanoset token folders, checks, round trip.

One small run of stages 01 and 02 on the sample corpus (scale 0.05), then the checks nanotron's
Nanoset would make, each failure provoked on a tampered copy, and the bad inputs of the issue.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import finish, stage_ctx
from zagreus_utils.stages import data, nanoset, tokenization as tk, tokenizer
from zagreus_utils.pipeline import manifest
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_spec

OVERRIDES = {"data.sample_scale": 0.05}


@pytest.fixture(scope="module")
def spec():
    return load_spec("ita", "smoke", OVERRIDES)


@pytest.fixture(scope="module")
def run(tmp_path_factory, spec):
    root = tmp_path_factory.mktemp("run")
    data.run(stage_ctx("data", root, OVERRIDES))
    finish(root / "01_data")
    result = tk.run(stage_ctx("tokenization", root, OVERRIDES))
    return root, result


def _docs(folder: Path) -> list[list[int]]:
    """Every document of a merged token folder, split by its .index."""
    ds = sorted(folder.glob("*.ds"))[0]
    tokens = np.fromfile(ds, dtype=np.uint16)
    ends = np.fromfile(f"{ds}.index", dtype=np.uint64)
    starts = np.concatenate([[0], ends[:-1]])
    return [tokens[int(s):int(e)].tolist() for s, e in zip(starts, ends)]


def test_token_folders_pass_the_nanoset_checks(run, spec):
    root, result = run
    out = root / "02_tokenization"
    name = nanoset.nanoset_tokenizer_name(spec, out)
    assert name == str(out.resolve() / "tokenizer")
    summary = json.loads((out / "tokenized" / "summary.json").read_text())
    assert summary["tokenizer"] == summary["tokenizer_name_or_path"] == name
    assert (summary["vocab_size"], summary["token_size"]) == (8192, 2)
    assert summary["metadata_line"] == f"{name}|2"
    assert set(summary["sources"]) == {s.id for s in spec.language.mixture}
    for sid, info in summary["sources"].items():
        folder = out / "tokenized" / sid
        assert info["folder"] == str(folder)
        v = nanoset.verify_nanoset_folder(folder, name, 8192)
        assert v["tokens"] == info["tokens"] > 0
        assert sum(p.stat().st_size for p in folder.glob("*.ds")) == 2 * info["tokens"]
        assert sorted(folder.glob("*.metadata"))[0].read_text().splitlines()[0] == f"{name}|2"
        assert not list(folder.glob("*unshuffled*")), "per-task files must stay out of the Nanoset folder"
    assert summary["total_tokens"] == sum(i["tokens"] for i in summary["sources"].values())
    assert result.frames["nanoset_checks"].shape[0] == 4


def test_round_trip_documents_are_framed_and_decode_to_clean_text(run):
    from transformers import AutoTokenizer

    root, _ = run
    out = root / "02_tokenization"
    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    clean = {t for f in (root / "01_data" / "clean" / "fineweb").glob("*.parquet")
             for t in pq.read_table(f).column("text").to_pylist()}
    docs = _docs(out / "tokenized" / "fineweb")
    assert len(docs) == len(clean)
    for ids in docs[:25]:
        assert ids[0] == 0 and ids[-1] == 1  # <|begin_of_text|> ... <|end_of_text|>
        assert tok.decode(ids[1:-1]) in clean
    # and through datatrove's dataset reader, as the trainers read it
    from datatrove.utils.dataset import DatatroveFolderDataset

    ds = DatatroveFolderDataset(str(out / "tokenized" / "fineweb"), 256, filename_pattern="*.ds",
                                recursive=False, token_size=2)
    window = ds[0]["input_ids"].tolist()
    flat = [t for d in docs for t in d]
    assert len(window) == 257 and window == flat[:257]
    assert len(ds) == len(flat) // 257


def test_smoke_tokenizer_special_tokens_and_vocab(run):
    from transformers import AutoTokenizer

    root, _ = run
    tok = AutoTokenizer.from_pretrained(str(root / "02_tokenization" / "tokenizer"))
    assert len(tok) == 8192
    assert [tok.convert_tokens_to_ids(t) for t in tokenizer.SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token) == (0, 1, "<|pad|>")
    assert tok("Ciao")["input_ids"][0] == 0  # Llama-3 style: BOS prepended
    chat = tok.apply_chat_template([{"role": "user", "content": "Ciao"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nCiao<|im_end|>\n<|im_start|>assistant\n"
    # a tiny corpus cannot fill 8,192 merges: reserved tokens make the vocabulary exact
    assert "<|reserved_special_token_0|>" in tok.get_vocab()


def test_fertility_tokens_per_source_and_storage(run):
    _, result = run
    fert = result.frames["fertility"]
    assert set(fert.language) == {"English", "Italian", "code"}
    assert (fert.tokens_per_word > 0.5).all() and (fert.bytes_per_token > 1).all()
    per = result.frames["tokens_per_source"]
    assert set(per.source) == {"fineweb", "fineweb2", "finepdfs", "starcoderdata"}
    storage = result.frames["storage"]
    this = storage.iloc[0]
    assert this.out_per_in == pytest.approx(this.token_bytes / this.text_bytes, rel=1e-3)
    assert this.report_rule == 3.0
    plan = storage[storage.what.str.startswith("plan")]
    assert plan.tokens.tolist() == [1e12, 1e12]
    assert plan.token_bytes.iloc[1] > 4e12  # Llama-3.2 ids are 4 bytes: more than 4 TB for 1T tokens
    index = json.loads((result.out_dir / "outputs.json").read_text())
    assert {f["id"] for f in index["figures"]} == {"fertility", "storage"}
    for item in index["figures"]:
        assert (result.out_dir / item["png"]).stat().st_size > 10_000


def test_rerun_skips_finished_datatrove_tasks(run, spec):
    root, _ = run
    out = root / "02_tokenization"
    files = sorted((out / "tokenized").glob("*/*.ds")) + [out / "tokenizer" / "tokenizer.json"]
    before = {p: p.stat().st_mtime_ns for p in files}
    tk.run(stage_ctx("tokenization", root, OVERRIDES))
    assert {p: p.stat().st_mtime_ns for p in files} == before


# --- the Nanoset checks, each failure --------------------------------------------------------

@pytest.fixture
def folder(run, tmp_path):
    root, _ = run
    copy = tmp_path / "fineweb"
    shutil.copytree(root / "02_tokenization" / "tokenized" / "fineweb", copy)
    name = nanoset.nanoset_tokenizer_name(load_spec("ita", "smoke"), root / "02_tokenization")
    return copy, name


def _meta(folder: Path) -> Path:
    """The .metadata Nanoset reads first (the merger also writes a folder-level <id>.ds.metadata)."""
    return sorted(folder.glob("*.metadata"))[0]


def test_nanoset_check_other_tokenizer_string(folder):
    f, name = folder
    with pytest.raises(ZagreusError, match="records tokenizer .* but the pretraining config will carry 'meta-llama"):
        nanoset.verify_nanoset_folder(f, "meta-llama/Llama-3.2-1B", 8192)
    lines = _meta(f).read_text().splitlines()
    _meta(f).write_text("\n".join([f"{name}/tokenizer.json|2"] + lines[1:]))
    with pytest.raises(ZagreusError, match="Nanoset asserts they are equal"):
        nanoset.verify_nanoset_folder(f, name, 8192)


def test_nanoset_check_token_size(folder):
    f, name = folder
    lines = _meta(f).read_text().splitlines()
    _meta(f).write_text("\n".join([f"{name}|4"] + lines[1:]))
    with pytest.raises(ZagreusError, match="records 4-byte tokens but a vocabulary of 8,192 needs 2-byte"):
        nanoset.verify_nanoset_folder(f, name, 8192)
    _meta(f).write_text("\n".join([f"{name}|2"] + lines[1:]))
    with pytest.raises(ZagreusError, match="vocabulary of 128,256 needs 4-byte"):
        nanoset.verify_nanoset_folder(f, name, 128256)


def test_nanoset_check_vocab_size(folder):
    f, name = folder
    with pytest.raises(ZagreusError, match="does not fit a vocabulary of 1,000"):
        nanoset.verify_nanoset_folder(f, name, 1000)


def test_nanoset_check_broken_files(folder, tmp_path):
    f, name = folder
    ds = sorted(f.glob("*.ds"))[0]
    with open(ds, "ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(ZagreusError, match="not a whole number of 2-byte tokens"):
        nanoset.verify_nanoset_folder(f, name, 8192)
    with open(ds, "ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(ZagreusError, match="the index ends at token"):
        nanoset.verify_nanoset_folder(f, name, 8192)
    _meta(f).unlink()
    with pytest.raises(ZagreusError, match="000_fineweb.ds lacks its .index or .metadata"):
        nanoset.verify_nanoset_folder(f, name, 8192)
    for meta in f.glob("*.metadata"):
        meta.unlink()
    with pytest.raises(ZagreusError, match="no .metadata file"):
        nanoset.verify_nanoset_folder(f, name, 8192)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZagreusError, match="holds no \\*.ds files"):
        nanoset.verify_nanoset_folder(tmp_path / "empty", name, 8192)


def test_read_back_needs_one_full_window(folder):
    f, _ = folder
    assert nanoset.read_back(f, 16, 2)["samples"] > 0
    with pytest.raises(ZagreusError, match="fewer than"):
        nanoset.read_back(f, 10_000_000, 2)


@pytest.mark.parametrize("bad", ["", " meta-llama/Llama-3.2-1B", "a|b", "tok\nenizer",
                                 "/data/tokenizer/tokenizer.json"])
def test_tokenizer_strings_that_cannot_match_nanoset(bad):
    with pytest.raises(ZagreusError, match="would not pass nanotron's Nanoset check"):
        nanoset.check_tokenizer_name(bad)


def test_good_tokenizer_strings():
    assert nanoset.check_tokenizer_name("meta-llama/Llama-3.2-1B") == "meta-llama/Llama-3.2-1B"
    assert nanoset.check_tokenizer_name("/runs/smoke/ita/02_tokenization/tokenizer")
    assert nanoset.token_size_for(65536) == 2 and nanoset.token_size_for(65537) == 4
    assert nanoset.token_size_for(128256) == 4


def test_bad_tokenizer_string_refused_before_work(run, tmp_path):
    root, _ = run
    with pytest.raises(ZagreusError, match="tokenizer.json file"):
        tk.run(stage_ctx("tokenization", root, {"tokenizer.name_or_path": "/models/llama/tokenizer.json"},
                         out_dir=tmp_path / "02", profile="full"))
    assert not (tmp_path / "02").exists()


# --- tokenizers offline ----------------------------------------------------------------------

@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    return tmp_path / "hub"


def test_uncached_pretrained_tokenizer_is_refused_with_the_fix(empty_cache, run, tmp_path):
    root, _ = run
    with pytest.raises(ZagreusError) as err:
        tk.run(stage_ctx("tokenization", root, out_dir=tmp_path / "02", profile="full"))
    msg = str(err.value)
    assert "'meta-llama/Llama-3.2-1B'" in msg and "cannot be loaded offline" in msg
    assert "huggingface-cli download meta-llama/Llama-3.2-1B" in msg and "--profile smoke" in msg
    assert not (tmp_path / "02").exists()


def test_cached_pretrained_tokenizer_is_found_offline(empty_cache, run):
    root, _ = run
    snapshot = empty_cache / "models--meta-llama--Llama-3.2-1B" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(root / "02_tokenization" / "tokenizer" / "tokenizer.json", snapshot / "tokenizer.json")
    (empty_cache / "models--meta-llama--Llama-3.2-1B" / "refs").mkdir()
    (empty_cache / "models--meta-llama--Llama-3.2-1B" / "refs" / "main").write_text("a" * 40)
    found = tokenizer.cached_tokenizer_file("meta-llama/Llama-3.2-1B")
    assert found == snapshot / "tokenizer.json"
    full = load_spec("ita", "full", {"tokenizer.vocab_size": 8192})
    assert tokenizer.pretrained_tokenizer_file(full) == found
    assert nanoset.nanoset_tokenizer_name(full, "/anywhere") == "meta-llama/Llama-3.2-1B"
    # with Llama-3.2 in the cache, the fertility table shows it beside the run's own tokenizer
    r = tk.run(stage_ctx("tokenization", root, OVERRIDES))
    assert set(r.frames["fertility"].tokenizer) == {"smoke BPE (8,192)", "meta-llama/Llama-3.2-1B"}
    plan = r.frames["storage"].iloc[2]
    assert plan.tokenizer.startswith("meta-llama/Llama-3.2-1B") and plan.text_bytes > 0


def test_model_bos_eos_ids_must_match_the_tokenizer(run, tmp_path):
    root, _ = run
    shutil.copytree(root / "02_tokenization" / "tokenizer", tmp_path / "02" / "tokenizer")
    with pytest.raises(ZagreusError, match=r"<\|begin_of_text\|> has id 0, but the model's bos_token_id .* is 5"):
        tk.run(stage_ctx("tokenization", root, {**OVERRIDES, "model.bos_token_id": 5}, out_dir=tmp_path / "02"))
    assert not (tmp_path / "02" / "tokenized").exists()


def test_tokenization_before_data_gives_the_clear_error(tmp_path):
    with pytest.raises(ZagreusError,
                       match=r"stage 01_data has not run.*zagreus run --profile smoke --languages ita --stages data"):
        tk.run(stage_ctx("tokenization", tmp_path / "run"))
    (tmp_path / "run" / "01_data").mkdir(parents=True)
    manifest.write(tmp_path / "run" / "01_data", {"status": "failed", "error": "boom"})
    with pytest.raises(ZagreusError, match="ended with status 'failed': boom"):
        tk.run(stage_ctx("tokenization", tmp_path / "run"))


def test_slurm_dry_run_of_tokenization(run, tmp_path):
    root, _ = run
    r = tk.run(stage_ctx("tokenization", root, OVERRIDES, out_dir=tmp_path / "02", launcher="slurm"), dry_run=True)
    assert list(r.slurm_scripts) == ["tokenize", "merge"]
    assert all(s.startswith("#!/bin/bash\n#SBATCH") for s in r.slurm_scripts.values())
    # smoke: slurm.tokenization.workers = 2, so every shard (and every source's merge) is packed into 2 tasks
    assert len(list((root / "01_data" / "clean").glob("*/*.parquet"))) > 2
    assert "#SBATCH --array=0-1%2\n" in r.slurm_scripts["tokenize"]
    assert "#SBATCH --array=0-1%2\n" in r.slurm_scripts["merge"]
    assert not (tmp_path / "02" / "tokenized").exists()


@pytest.mark.timeout(120)
def test_forked_workers_do_not_hang_with_parallelism_forced_on(run, spec, tmp_path, monkeypatch):
    """TOKENIZERS_PARALLELISM=true set by the user + rayon used in the parent + a forked pool:
    tokenizers would keep its (gone) thread pool in the workers and hang; the stage turns it off."""
    from tokenizers import Tokenizer

    root, _ = run
    out = tmp_path / "02"
    shutil.copytree(root / "02_tokenization" / "tokenizer", out / "tokenizer")
    (out / "logs").mkdir(parents=True)
    shutil.copy(root / "02_tokenization" / "logs" / "tokenizer.json", out / "logs" / "tokenizer.json")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    tok = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
    tok.encode_batch(["uno due tre quattro"] * 2000)  # the parent's rayon pool is now in use
    r = tk.run(stage_ctx("tokenization", root, OVERRIDES, out_dir=out))
    assert r.summary["total_tokens"] == json.loads(
        (root / "02_tokenization" / "tokenized" / "summary.json").read_text())["total_tokens"]
