"""The benchmarks' synthetic inputs pass the trainer's own checks (a GPU check must not die on its inputs)."""
import sys
from pathlib import Path

import numpy as np

from zagreus_utils.model.token_data import TokenDataset, token_file_problems

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_trainer import synthetic_token_folders  # noqa: E402


def test_gpu_full_synthetic_token_files_pass_the_trainers_checks(tmp_path):
    tokens = (3 * 2 + 8) * (64 + 1)  # not a multiple of the 2048-token documents
    synthetic_token_folders(tmp_path, ["web", "books"], "tok", 128256, tokens)
    for name in ("web", "books"):
        assert token_file_problems(tmp_path / name, 4) == []
    data = TokenDataset([str(tmp_path / "web"), str(tmp_path / "books")], 64, 6, seed=0, vocab_size=128256)
    assert len(data) == 6 and data[0]["input_ids"].shape[-1] == 64


def test_gpu_full_synthetic_documents_end_with_eos(tmp_path):
    synthetic_token_folders(tmp_path, ["web"], "tok", 128256, 1000, eos_token_id=128001, doc_tokens=100)
    assert token_file_problems(tmp_path / "web", 4) == []
    ids = np.frombuffer((tmp_path / "web" / "000_web.ds").read_bytes(), dtype=np.uint32)
    assert list(np.flatnonzero(ids == 128001)) == list(range(99, 1000, 100))
