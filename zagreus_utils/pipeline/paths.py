"""Where things live: the repository's folders and the run folder layout."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The configs folder (languages, profiles, sample-corpus facts, task YAMLs); ZAGREUS_CONFIGS points
# the kit at another one (e.g. a copy with a language added), read when the package is imported.
CONFIGS = Path(os.environ.get("ZAGREUS_CONFIGS") or REPO_ROOT / "configs")
NOTEBOOKS = REPO_ROOT / "notebooks"
REPORT = REPO_ROOT / "report"
PUBLISHED = REPORT / "published"
# The technical report's markdown (shared/ beside the checkout); ZAGREUS_REPORT_SOURCE overrides it.
DEFAULT_REPORT_SOURCE = Path(os.environ.get("ZAGREUS_REPORT_SOURCE")
                             or REPO_ROOT.parent / "shared" / "reference" / "tech-report.md")


def runs_root() -> Path:
    """Root of all runs; ``ZAGREUS_RUNS`` overrides the default ``<repo>/runs``."""
    return Path(os.environ.get("ZAGREUS_RUNS", REPO_ROOT / "runs"))


def run_dir(profile: str, language: str | None = None, root: Path | None = None) -> Path:
    """``runs/<profile>/<language>`` (or ``runs/<profile>`` for profile-wide stages)."""
    base = Path(root) if root is not None else runs_root()
    return base / profile / language if language else base / profile


def report_dir(profile: str) -> Path:
    """Where the HTML report of a profile is built; ``ZAGREUS_REPORT_DIR`` overrides ``report/``."""
    return Path(os.environ.get("ZAGREUS_REPORT_DIR", REPORT)) / profile
