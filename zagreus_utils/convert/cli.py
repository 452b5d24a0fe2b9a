"""``zagreus convert nanotron-to-hf|hf-to-nanotron ...`` (also ``python -m zagreus_utils.convert``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..pipeline.errors import ZagreusError
from .folders import disk_error
from .to_hf import nanotron_to_hf
from .to_nanotron import hf_to_nanotron


def build_parser(prog: str = "zagreus convert") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Convert between nanotron checkpoints and "
                                "Hugging Face Llama folders (CPU only; verified by logits and a round trip).")
    sub = p.add_subparsers(dest="direction", required=True)
    a = sub.add_parser("nanotron-to-hf", help="a nanotron checkpoint (step folder or checkpoints root) to transformers")
    a.add_argument("src", type=Path)
    a.add_argument("dst", type=Path)
    a.add_argument("--tokenizer", type=Path, default=None, help="local tokenizer folder to copy into DST")
    a.add_argument("--overwrite", action="store_true", help="replace a model already in DST (the whole folder, once the new one is verified)")
    a.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                   help="dtype of the written weights (default: the checkpoint's)")
    a.add_argument("--no-verify", action="store_true", help="skip the logits check and the round trip")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    b = sub.add_parser("hf-to-nanotron", help="a transformers Llama folder to a nanotron checkpoint folder")
    b.add_argument("src", type=Path)
    b.add_argument("dst", type=Path)
    b.add_argument("--tp", type=int, default=1, help="tensor-parallel shards to write (default 1)")
    b.add_argument("--overwrite", action="store_true", help="replace a model already in DST (the whole folder, once the new one is verified)")
    b.add_argument("--no-verify", action="store_true", help="skip the logits check and the round trip")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def run_args(args: argparse.Namespace) -> int:
    if args.direction == "nanotron-to-hf":
        report = nanotron_to_hf(args.src, args.dst, tokenizer=args.tokenizer, overwrite=args.overwrite,
                                dtype=args.dtype, verify=not args.no_verify)
    else:
        report = hf_to_nanotron(args.src, args.dst, tp=args.tp, overwrite=args.overwrite, verify=not args.no_verify)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``zagreus convert ...``: ``argv`` is what follows ``convert``. Exit 2 on a user error."""
    args = build_parser().parse_args(argv)
    try:
        return run_args(args)
    except OSError as exc:  # outside the staged writes, e.g. reading the source
        print(f"error: {disk_error(exc, args.dst)}", file=sys.stderr)
        return 2
    except ZagreusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

