"""``python -m zagreus_utils.stages.evaluation array-task --plan PLAN --index I``: one Slurm array task."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...pipeline.errors import ZagreusError
from .slurm_job import array_task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("array-task", help="evaluate one model of a plan (a Slurm array task)")
    a.add_argument("--plan", required=True)
    a.add_argument("--index", required=True, type=int)
    args = parser.parse_args(argv)
    try:
        paths_out = array_task(Path(args.plan), args.index)
    except ZagreusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in paths_out:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
