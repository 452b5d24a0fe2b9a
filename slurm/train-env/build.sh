#!/usr/bin/env bash
# Build the training environment (nanotron on GPU nodes): `make train-env TRAIN_ENV=<dir>` calls it.
#
#   slurm/train-env/build.sh <dir>
#
# A venv with nanotron and datatrove at the commits pinned below, torch, flash-attn and their
# dependencies (requirements.txt: why nanotron is installed with --no-deps, the numpy conflict).
# nanotron's source tree (its run_train.py is not part of the installed package) is kept at
# <dir>/src/nanotron: the pretraining sbatch script runs <dir>/src/nanotron/run_train.py.
# Environment variables:
#   NANOTRON_SRC=<dir>, DATATROVE_SRC=<dir>  install from local source folders (an unpacked snapshot of
#                                            the pinned commit) instead of the git URLs
#   CPU_ONLY=1                               torch's CPU build (TORCH_CPU), no CUDA-only packages
#                                            (requirements-cuda.txt; printed as left out)
#   PYTHON=<python3.11>                      the interpreter of the venv (default: python3)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

# The pins (tests/test_environment.py checks each against ../shared/vendor snapshots).
NANOTRON_COMMIT=2411b022a75fb7f7561a1bb4166706da5e1b76de   # huggingface/nanotron main
DATATROVE_COMMIT=2c895af7a95010a96fa53e2dc77cc0ce92799e3f  # huggingface/datatrove nouamane/avoid-s3
# nanotron main's tokenized_bytes.py calls DatatroveFolderDataset(folder_path=..., read_path=...,
# matched_files=..., file_sizes=...): datatrove's releases (<= 0.10.1) lack those arguments, the
# avoid-s3 branch (the one the SmolLM3 recipe names) has them.
TORCH_CUDA="torch==2.6.0"                                  # with flash-attn 2.7.4.post1's prebuilt wheel
TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu124    # as nanotron's README installs it
TORCH_CPU="torch==2.13.0"                                  # the CPU build (CI, tests)

TRAIN_ENV="${1:-${TRAIN_ENV:-}}"
if [ -z "$TRAIN_ENV" ]; then
  echo "error: no target folder: make train-env TRAIN_ENV=<dir>" >&2
  exit 2
fi
PYTHON="${PYTHON:-python3}"
CPU_ONLY="${CPU_ONLY:-0}"

NANOTRON_REPO=https://github.com/huggingface/nanotron
datatrove="datatrove[io] @ git+https://github.com/huggingface/datatrove@$DATATROVE_COMMIT"
for var in NANOTRON_SRC DATATROVE_SRC; do
  src="${!var:-}"
  if [ -n "$src" ] && [ ! -f "$src/pyproject.toml" ]; then
    echo "error: $var=$src is not a source folder (no pyproject.toml); unpack the snapshot of the pinned commit there" >&2
    exit 2
  fi
done
if [ -n "${DATATROVE_SRC:-}" ]; then datatrove="$(cd "$DATATROVE_SRC" && pwd)[io]"; fi

start=$SECONDS
echo "train env: $TRAIN_ENV ($([ "$CPU_ONLY" = 1 ] && echo CPU only || echo CUDA))"
"$PYTHON" -m venv "$TRAIN_ENV"
pip=("$TRAIN_ENV/bin/python" -m pip install --quiet)

echo "[1/4] torch"
if [ "$CPU_ONLY" = 1 ]; then
  "${pip[@]}" "$TORCH_CPU"
else
  "${pip[@]}" "$TORCH_CUDA" --index-url "$TORCH_CUDA_INDEX"
fi
echo "[2/4] nanotron's dependencies without its numpy<2 pin (requirements.txt)"
"${pip[@]}" -r "$HERE/requirements.txt"
echo "[3/4] datatrove ${DATATROVE_SRC:-@ $DATATROVE_COMMIT}, nanotron ${NANOTRON_SRC:-@ $NANOTRON_COMMIT} (--no-deps: numpy<2)"
"${pip[@]}" "$datatrove"
nanotron="$TRAIN_ENV/src/nanotron"
rm -rf "$nanotron" && mkdir -p "$TRAIN_ENV/src"
if [ -n "${NANOTRON_SRC:-}" ]; then
  mkdir -p "$nanotron" && cp -a "$NANOTRON_SRC/." "$nanotron/"
else
  git clone --quiet "$NANOTRON_REPO" "$nanotron"
  git -C "$nanotron" checkout --quiet "$NANOTRON_COMMIT"
fi
# editable: a plain install leaves out nanotron/data's Makefile and helpers.cpp, which the Nanoset
# data path compiles at first use (it exits without them)
"${pip[@]}" --no-deps -e "$nanotron"
cuda_only="$(grep -vE '^\s*(#|$)' "$HERE/requirements-cuda.txt" | tr '\n' ' ')"
if [ "$CPU_ONLY" = 1 ]; then
  echo "[4/4] CPU_ONLY=1: left out the CUDA-only packages: $cuda_only"
else
  echo "[4/4] CUDA-only packages: $cuda_only"
  "${pip[@]}" --no-build-isolation -r "$HERE/requirements-cuda.txt"
fi
# nanotron's numpy<2 is the one expected complaint of `pip check`; anything else is a real conflict
if ! problems="$("$TRAIN_ENV/bin/python" -m pip check 2>&1)"; then
  rest="$(printf '%s\n' "$problems" | grep -v '^nanotron .* has requirement numpy<2,' || true)"
  if [ -n "$rest" ]; then
    printf 'error: conflicting dependencies in the train env:\n%s\n' "$rest" >&2
    exit 1
  fi
fi
# what was built, for `zagreus doctor` (it compares these commits with the pins above)
"$TRAIN_ENV/bin/python" -c 'import json, sys
keys = ("nanotron", "datatrove", "cpu_only", "nanotron_source", "datatrove_source")
record = dict(zip(keys, sys.argv[2:]), cpu_only=sys.argv[4] == "1")
open(sys.argv[1], "w").write(json.dumps(record, indent=1) + "\n")' "$TRAIN_ENV/zagreus-train-env.json" \
  "$NANOTRON_COMMIT" "$DATATROVE_COMMIT" "$CPU_ONLY" "${NANOTRON_SRC:-$NANOTRON_REPO}" "${DATATROVE_SRC:-git}"
echo "train env ready in $((SECONDS - start)) s: $TRAIN_ENV/bin/python"
