"""What `zagreus run` prints: no Jupyter transport warning, the stage's own progress line while it
runs (real papermill, a real kernel), and the final summary with where the report is."""
import re

from conftest import make_notebook
from zagreus_utils.pipeline import progress, runner

LANG_PARAMS = 'profile = "smoke"\nlanguage = "ita"\nrun_dir = ""\nout_dir = ""\n'


def test_a_stage_shows_its_own_progress_and_no_kernel_warning(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)  # stderr is not a terminal here: print each change
    nbs = tmp_path / "notebooks"
    make_notebook(nbs / "01_count.ipynb", LANG_PARAMS,
                  "import time\nfrom zagreus_utils.pipeline import progress\n"
                  "steps = progress.Steps('train', 'counting', 4)\n"
                  "for i in range(1, 5):\n    steps.update(i, f'loss {5 - i}.000')\n    time.sleep(0.8)\n")
    summary = runner.run("smoke", ["ita"], root=tmp_path / "runs", notebooks=nbs, progress=True,
                         log=runner.stderr_log)
    assert [r.status for r in summary.results] == ["ok"]
    err = capfd.readouterr().err
    assert "without encryption" not in err and "IPKernelApp" not in err, err
    lines = re.findall(r"^\[smoke/ita\] 01_count · cell \d+/\d+ · counting step (\d)/4 · loss (\d).000"
                       r"(?: · 0:00:0\d left)?$", err, flags=re.M)
    assert lines, err
    assert all(int(step) + int(loss) == 5 for step, loss in lines)  # the stage's own numbers, as it wrote them
    assert not (tmp_path / "runs" / "smoke" / ".cache" / "progress" / "ita" / "01_count").exists()
    assert "ZAGREUS_PROGRESS" not in __import__("os").environ


def test_steps_estimates_the_time_left_from_the_steps_since_it_started():
    now = [100.0]
    steps = progress.Steps("train", "pretraining", 400, start=100, clock=lambda: now[0])
    now[0] += 30.0  # 30 s for 60 steps after resuming at step 100: 0.5 s a step, 240 to go
    assert steps.text(160, "loss 4.200", "") == "pretraining step 160/400 · loss 4.200 · 0:02:00 left"
    assert steps.text(400) == "pretraining step 400/400"


def test_progress_is_not_written_outside_zagreus_run(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    progress.report("train", "x")  # JupyterLab: nothing to write to, no error
    monkeypatch.setenv(progress.ENV, str(tmp_path))
    progress.report("train", "step 1/2")
    assert (tmp_path / "train.txt").read_text() == "step 1/2"
    monkeypatch.setenv(progress.ENV, str(tmp_path / "gone" / "deeper"))
    progress.report("train", "step 2/2")  # a folder that went away: dropped, never raises


def test_summary_ends_with_the_total_and_where_the_report_is(tmp_path):
    from zagreus_utils.pipeline import paths

    s = runner.RunSummary("smoke", [runner.StageRun("ita", "01_data", "ok", 12.34, folder=tmp_path / "a"),
                                    runner.StageRun("ita", "02_tokenization", "skipped", 0.0, folder=tmp_path / "b")])
    text = s.table(report=paths.REPO_ROOT / "report" / "smoke" / "index.html")
    lines = text.splitlines()
    assert re.match(r"ita\s+01_data\s+ok\s+12\.3\s", lines[1])
    assert lines[-2] == "total: 2 stage runs in 12.3 s (1 ok, 1 skipped)"
    assert lines[-1].startswith("report: report/smoke/index.html  (file://")


def test_sft_progress_reads_axolotl_s_own_log(tmp_path):
    """The tail of a real axolotl train log of the smoke profile (tests/fixtures): the Trainer's bar
    and its last logged loss."""
    from pathlib import Path

    from zagreus_utils.stages.sft.axolotl import log_progress

    log = Path(__file__).parent / "fixtures" / "axolotl_train_tail.log"
    assert log_progress("train", log) == "sft train step 29/40 · loss 0.751 · 00:59 left"
    assert log_progress("preprocess", log) == "sft preprocess"
    assert log_progress("train", tmp_path / "not-yet.log") == "sft train"
    saving = tmp_path / "train.log"  # a shorter bar after training (a line of the same log's end)
    saving.write_text(log.read_text() + "\nWriting model shards: 100%|##########| 1/1 [00:00<00:00, 22.60it/s]\n")
    assert log_progress("train", saving).startswith("sft train step 29/40 · loss 0.751")


def test_a_followed_slurm_job_shows_its_state_in_the_progress_line(tmp_path, monkeypatch):
    from zagreus_utils.cluster import slurm

    monkeypatch.setenv(progress.ENV, str(tmp_path))
    seen = []

    def state(job_id):  # what squeue/sacct report, one state per poll
        states = [slurm.JobState("6", "RUNNING"), slurm.JobState("6", "COMPLETED", 0, 0)]
        seen.append((tmp_path / "slurm.txt").read_text() if (tmp_path / "slurm.txt").exists() else "")
        return states[min(len(seen) - 1, 1)]

    slurm.follow("6", poll=0, state_fn=state, nodes_fn=lambda p: [], sleep=lambda s: None, progress=True,
                 label="pretraining: Slurm job", detail=lambda: "step 12/400")
    assert seen[1].startswith("pretraining: Slurm job 6: RUNNING") and seen[1].endswith("| step 12/400")
