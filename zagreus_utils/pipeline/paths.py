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


# --- the Hugging Face and NLTK caches (filled by `zagreus prefetch`, read offline by the stages) ---

def hf_home() -> Path:
    """``$HF_HOME`` as it is now (huggingface_hub's constants are fixed when it is imported)."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME)


def hub_cache() -> Path:
    """Where the hub files go: ``$HF_HUB_CACHE``, else ``<HF_HOME>/hub``."""
    return Path(os.environ.get("HF_HUB_CACHE") or hf_home() / "hub").expanduser()


def nltk_data_dir() -> Path:
    """Where NLTK data is fetched to and read from: ``$NLTK_DATA``, else ``<HF_HOME>/nltk_data``."""
    return Path(os.environ.get("NLTK_DATA") or hf_home() / "nltk_data")
