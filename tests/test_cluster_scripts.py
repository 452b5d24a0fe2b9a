"""Every sbatch script the kit renders (pretraining, SFT, eval; smoke and full profiles) passes
shellcheck, activates its Python environment and passes --cpus-per-task on to srun."""
import shutil
import subprocess
from pathlib import Path

import pytest

from zagreus_utils.stages import evaluation, sft
from zagreus_utils.cluster import sbatch
from zagreus_utils.pipeline.spec import load_spec

SHELLCHECK = shutil.which("shellcheck")


def _eval_plan(tmp_path, profile):
    return evaluation.EvalPlan(profile=profile, language="ita", overrides={}, run_dir=str(tmp_path / "run"),
                           out_dir=str(tmp_path / "out"),
                           models=[evaluation.ModelEntry("step-100", str(tmp_path / "m"), "base", 100)],
                           suites={"base": []}, tasks_dir=None, include_defaults=True, tasks_digest="0",
                           batch_size=1, device="cpu", dtype="float32")


def _scripts(tmp_path) -> dict[str, str]:
    out = {}
    for profile in ("smoke", "full"):
        spec = load_spec("ita", profile)
        entry = "nanotron" if spec.profile.hardware.gpus_per_node else "local"
        out[f"pretraining-{profile}"] = sbatch.render(spec, "runs/x/config.yaml", entry=entry, venv="/opt/kit").text
        out[f"sft-{profile}"] = sft.render_sbatch(spec, "runs/x/sft.yaml", venv="/opt/kit").text
        out[f"eval-{profile}"] = evaluation.slurm_script(_eval_plan(tmp_path, profile), tmp_path / "plan.json",
                                                         spec=spec).text
    return out


def test_every_rendered_script_passes_shellcheck(tmp_path):
    if SHELLCHECK is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; .ci/run installs it)")
    for name, text in _scripts(tmp_path).items():
        path = tmp_path / f"{name}.sbatch"
        path.write_text(text)
        cp = subprocess.run([SHELLCHECK, "--shell=bash", str(path)], capture_output=True, text=True)
        assert cp.returncode == 0, f"{name}:\n{cp.stdout}"


def test_srun_gets_the_cpus_per_task_and_the_environment_is_activated(tmp_path):
    scripts = _scripts(tmp_path)
    for name in ("pretraining-smoke", "pretraining-full", "sft-smoke", "sft-full"):
        text = scripts[name]
        assert text.index('export SRUN_CPUS_PER_TASK="${SLURM_CPUS_PER_TASK:-') < text.index("\nsrun "), name
        assert "/bin/activate" in text.split("\nsrun ")[0], name
    full = scripts["pretraining-full"]
    assert "TRAIN_ENV=.venv-train\n" in full and 'TRAIN_ENV="${ZAGREUS_TRAIN_ENV:-$TRAIN_ENV}"' in full
    assert 'source "$TRAIN_ENV/bin/activate"' in full and "/opt/kit" not in full  # the train env, not the kit's
    assert 'NANOTRON_DIR="${NANOTRON_DIR:-$TRAIN_ENV/src/nanotron}"' in full
    assert "source /opt/kit/bin/activate" in scripts["pretraining-smoke"]


def test_pretraining_script_stops_with_the_fix_when_the_train_env_is_missing(tmp_path):
    text = sbatch.render(load_spec("ita", "full"), "c.yaml", workdir=tmp_path).text
    env = {"PATH": "/usr/bin:/bin", "ZAGREUS_TRAIN_ENV": str(tmp_path / "nowhere")}
    cp = subprocess.run(["bash", "-c", text], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert cp.returncode == 1
    assert f"no training environment at {tmp_path / 'nowhere'}: build it with make train-env" in cp.stderr


def test_eval_script_reads_nltk_data_from_the_prefetched_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk"))
    text = evaluation.slurm_script(_eval_plan(tmp_path, "full"), tmp_path / "plan.json",
                                   spec=load_spec("ita", "full")).text
    assert f"export NLTK_DATA={tmp_path / 'nltk'}\n" in text
    assert text.index("export NLTK_DATA") < text.index("exec ")


def test_readme_cluster_walkthrough_uses_commands_that_exist_in_order():
    import re

    from zagreus_utils import cli
    from zagreus_utils.pipeline import paths

    readme = (paths.REPO_ROOT / "README.md").read_text()
    section = readme.split("## Cluster: from `git clone` to `sbatch`")[1].split("\n## ")[0]
    block = section.split("```bash\n")[1].split("```")[0]
    commands = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()]
    firsts = [c.split()[0] if not c.startswith("srun") else "srun" for c in commands]
    assert firsts[0] == "git" and commands[-1].startswith("zagreus run")
    order = [next(i for i, c in enumerate(commands) if re.search(pat, c)) for pat in
             (r"^git clone", r"environment\.yml", r"^make train-env", r"zagreus prefetch .*--dry-run",
              r"^zagreus prefetch --profile full", r"zagreus doctor", r"^zagreus run .*--launcher slurm")]
    assert order == sorted(order), commands
    parser = cli.build_parser()
    for c in commands:  # every zagreus command parses with the real CLI
        words = c.split()
        if words[0] in ("zagreus", "srun"):
            parser.parse_args(words[words.index("zagreus") + 1:])
    makefile = (paths.REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^train-env:", makefile, re.M)
    assert "sbatch runs/full/ita/03_pretraining/pretraining.sbatch" in section


def test_datatrove_slurm_script_exports_srun_cpus_per_task(tmp_path):
    from datatrove.pipeline.readers import ParquetReader

    from zagreus_utils.cluster import executors

    ex = executors.make_executor(load_spec("ita", "full"), "slurm", [ParquetReader(str(tmp_path / "in"))],
                                 job_name="tokenize", logging_dir=tmp_path / "logs")
    lines = executors.slurm_dry_run(ex).splitlines()
    srun = next(i for i, ln in enumerate(lines) if ln.startswith("srun "))
    assert lines[srun - 1] == 'export SRUN_CPUS_PER_TASK="${SLURM_CPUS_PER_TASK:-1}"'
    assert subprocess.run(["bash", "-n"], input="\n".join(lines), text=True).returncode == 0
