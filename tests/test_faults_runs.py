"""Fault injection for issue 12, findings 4-6 (run folders): one writer per run folder, the
languages a run covers, and everything checkable checked before the first stage. Each test is
named after the finding it reproduces; tiny stage notebooks keep them to seconds."""
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_notebook
from zagreus_utils import cli
from zagreus_utils.pipeline import lock, manifest, paths, runner
from zagreus_utils.results import report
from zagreus_utils.pipeline.errors import ZagreusError

LANG_PARAMS = 'profile = "smoke"\nlanguage = "ita"\nrun_dir = ""\nout_dir = ""\n'
PROFILE_PARAMS = 'profile = "smoke"\nlanguages = ["ita"]\nout_dir = ""\n'
# A stage that logs its steps the way the trainer does (metrics.jsonl, appended). It waits for a
# `go` file beside the run folders when there is a `hold` file, so that a test can keep it running.
STEPS_BODY = """from pathlib import Path
import json, time
base = Path(run_dir).parent
if (base / "hold").exists():
    (base / "started").write_text("yes")
    deadline = time.time() + 20
    while not (base / "go").exists():
        if time.time() > deadline:
            raise TimeoutError("nobody said go")
        time.sleep(0.1)
with open(Path(out_dir, "metrics.jsonl"), "a") as fh:
    for step in range(1, 4):
        fh.write(json.dumps({"step": step}) + "\\n")
"""


def _tiny(tmp_path, body=STEPS_BODY):
    nbs = tmp_path / "notebooks"
    make_notebook(nbs / "01_alpha.ipynb", LANG_PARAMS, body)
    make_notebook(nbs / "09_summary.ipynb", PROFILE_PARAMS,
                  "from pathlib import Path\nPath(out_dir, 'langs.txt').write_text(','.join(languages))\n")
    return nbs, tmp_path / "runs"


def _run(nbs, root, languages=("ita",), log=None, **kw):
    return runner.run("smoke", list(languages), root=root, notebooks=nbs, progress=False,
                      log=log or (lambda m: None), **kw)


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(paths.REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def _start_first_run(nbs, root):
    """A first `zagreus run` (the runner in its own process) that stays in its stage until `go`."""
    code = ("import sys\nfrom pathlib import Path\nfrom zagreus_utils.pipeline import runner\n"
            f"s = runner.run('smoke', ['ita'], root=Path({str(root)!r}), notebooks=Path({str(nbs)!r}), progress=False)\n"
            "print([r.status for r in s.results])\n")
    return subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc, seconds=60):
    deadline = time.time() + seconds
    while not path.exists():
        if proc.poll() is not None or time.time() > deadline:
            out, err = proc.communicate()
            pytest.fail(f"the first run did not reach its stage: {out}{err}")
        time.sleep(0.1)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _lock_file(root: Path, **holder) -> Path:
    path = root / "smoke" / lock.LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"started": "2026-01-01T00:00:00+00:00", "command": "zagreus run", **holder}))
    return path


# --- finding 4: one writer per run folder ---------------------------------------------------

def test_finding4_second_run_is_refused_naming_the_first(tmp_path):
    nbs, root = _tiny(tmp_path)
    (root / "smoke").mkdir(parents=True)
    (root / "smoke" / "hold").write_text("")
    first = _start_first_run(nbs, root)
    try:
        _wait_for(root / "smoke" / "started", first)
        with pytest.raises(ZagreusError) as err:
            _run(nbs, root)
        message = str(err.value)
        assert f"PID {first.pid}" in message and socket.gethostname() in message and "since " in message
        assert "in use by another `zagreus run`" in message
    finally:
        (root / "smoke" / "go").write_text("")
        out, errs = first.communicate(timeout=120)
    assert first.returncode == 0 and "['ok', 'ok']" in out, errs
    steps = [json.loads(line)["step"] for line in
             (root / "smoke" / "ita" / "01_alpha" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # every step once: the second run wrote nothing
    assert not (root / "smoke" / lock.LOCK).exists()  # released at the end


def test_finding4_stale_lock_is_taken_over(tmp_path):
    nbs, root = _tiny(tmp_path)
    dead = _dead_pid()
    _lock_file(root, host=socket.gethostname(), pid=dead)
    notes = []
    summary = _run(nbs, root, log=notes.append)
    assert [r.status for r in summary.results] == ["ok", "ok"]
    took_over = [n for n in notes if "took over the stale lock" in n]
    assert len(took_over) == 1 and f"PID {dead}" in took_over[0]
    assert not (root / "smoke" / lock.LOCK).exists()


def test_finding4_lock_of_a_reused_pid_is_stale(tmp_path):
    nbs, root = _tiny(tmp_path)
    # the PID is alive (this very process) but started long after the recorded holder did
    _lock_file(root, host=socket.gethostname(), pid=os.getpid(), pid_started=1000.0)
    notes = []
    assert [r.status for r in _run(nbs, root, log=notes.append).results] == ["ok", "ok"]
    assert any("took over the stale lock" in n for n in notes)


def test_finding4_lock_of_another_host_is_refused_saying_how_to_remove_it(tmp_path):
    nbs, root = _tiny(tmp_path)
    path = _lock_file(root, host="node-17.cluster", pid=4242)
    with pytest.raises(ZagreusError, match=r"host node-17\.cluster, PID 4242, since 2026-01-01") as err:
        _run(nbs, root)
    assert f"rm {path}" in str(err.value)
    assert path.exists() and not (root / "smoke" / "ita").exists()  # nothing ran, the lock is left alone


def test_finding4_lock_released_on_interrupt(tmp_path):
    body = ("import os, signal, time\nfrom pathlib import Path\n"
            "base = Path(run_dir).parent\n"
            "(base / 'locked').write_text(str((base / '.zagreus.lock').is_file()))\n"
            "os.kill(os.getppid(), signal.SIGINT)\ntime.sleep(30)\n")
    nbs, root = _tiny(tmp_path, body)
    code = ("from pathlib import Path\nfrom zagreus_utils.pipeline import runner\n"
            f"runner.run('smoke', ['ita'], root=Path({str(root)!r}), notebooks=Path({str(nbs)!r}), progress=False)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr
    assert (root / "smoke" / "locked").read_text() == "True"  # held while the stage ran
    assert not (root / "smoke" / lock.LOCK).exists()  # and released by the interrupt


def test_finding4_lock_released_when_zagreus_run_is_terminated(tmp_path):
    """SIGTERM (scancel, kill) ends `zagreus run` like Ctrl-C: the lock goes, exit 130."""
    root = tmp_path / "runs"
    env = {**_env(), "ZAGREUS_RUNS": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "zagreus_utils.cli", "run", "--profile", "smoke", "--languages",
                             "ita", "--stages", "data", "--quiet", "--no-report"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(root / "smoke" / "ita" / "01_data" / "manifest.json", proc)  # inside its first stage
    assert (root / "smoke" / lock.LOCK).is_file()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert not (root / "smoke" / lock.LOCK).exists()


# --- finding 5: languages --------------------------------------------------------------------

@pytest.fixture
def configs_with_deu(tmp_path, monkeypatch):
    """configs/ with a copied language file (deu) that the sample corpus cannot generate."""
    configs = tmp_path / "configs"
    shutil.copytree(paths.CONFIGS, configs)
    text = (configs / "languages" / "ita.yaml").read_text()
    (configs / "languages" / "deu.yaml").write_text(re.sub(r"(?m)^code: ita$", "code: deu", text))
    monkeypatch.setattr(paths, "CONFIGS", configs)
    return configs


def test_finding5_extra_language_file_does_not_break_ita_report(tmp_path, configs_with_deu, monkeypatch):
    nbs, root = _tiny(tmp_path)
    shutil.copy(paths.NOTEBOOKS / "07_plots.ipynb", nbs / "07_plots.ipynb")
    (nbs / "09_summary.ipynb").unlink()
    summary = _run(nbs, root)
    assert [(r.stage, r.status, r.error) for r in summary.results] == [("01_alpha", "ok", ""), ("07_plots", "ok", "")]
    plots = manifest.read(root / "smoke" / "07_plots")
    assert plots["parameters"]["languages"] == ["ita"]
    # the report's published tables and figures are all there, whichever languages ran
    outputs = json.loads((root / "smoke" / "07_plots" / "outputs.json").read_text())
    assert {f["id"] for f in outputs["figures"]} >= {"zagreus-ita", "zagreus-spa", "zagreus-fra", "zagreus-por"}
    monkeypatch.setenv("ZAGREUS_REPORT_DIR", str(tmp_path / "report"))
    assert report.build("smoke", root=root).is_file()


def test_finding5_language_without_sample_corpus_refused_before_any_stage(tmp_path, configs_with_deu):
    nbs, root = _tiny(tmp_path)
    with pytest.raises(ZagreusError) as err:
        _run(nbs, root, languages=("ita", "deu"))
    message = str(err.value)
    assert "language 'deu' cannot run on profile 'smoke'" in message
    assert "sample corpus" in message and "fra, ita, por, spa" in message and "configs/profiles/smoke.yaml:" in message
    assert not root.exists()  # not even ita ran
    # --help does not promise deu on the smoke profile
    help_text = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    assert "deu: only on a profile with data.source: hub" in help_text


def test_finding5_plots_cover_languages_asked_for_or_run(tmp_path, configs_with_deu):
    nbs, root = _tiny(tmp_path)
    _run(nbs, root, languages=("spa",))
    _run(nbs, root, languages=("ita",))
    assert (root / "smoke" / "09_summary" / "langs.txt").read_text() == "ita,spa"  # not deu, fra, por


# --- finding 6: everything checkable before the first stage -----------------------------------

def test_finding6_dotdot_language_refused(tmp_path, configs_with_deu):
    nbs, root = _tiny(tmp_path)
    # a language file reachable through ../ whose code says the same: it would run in tmp/outside
    text = (configs_with_deu / "languages" / "ita.yaml").read_text()
    (tmp_path / "outside.yaml").write_text(re.sub(r"(?m)^code: ita$", "code: ../../outside", text))
    for bad in ("../../outside", "Ita", "ita-x"):
        with pytest.raises(ZagreusError, match=rf"language name {re.escape(repr(bad))} is not valid"):
            _run(nbs, root, languages=(bad,))
    assert not (tmp_path / "outside").exists() and not root.exists()
    with pytest.raises(ZagreusError, match=r"profile name '\.\./smoke' is not valid"):
        runner.run("../smoke", ["ita"], root=root, notebooks=nbs, progress=False, log=lambda m: None)


def test_finding6_bad_set_refused_before_first_stage_once(tmp_path, monkeypatch, capsys):
    nbs, root = _tiny(tmp_path)
    monkeypatch.setattr(paths, "NOTEBOOKS", nbs)
    monkeypatch.setenv("ZAGREUS_RUNS", str(root))
    code = cli.main(["run", "--profile", "smoke", "--set", "training.train_steps=50", "--quiet", "--no-report"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 2 and not root.exists(), out  # refused before the first stage
    assert out.count("lr_decay_starting_step 320 is after train_steps (50)") == 1, out
    assert "--set training.train_steps=50" in out and re.search(r"configs/profiles/smoke\.yaml:\d+", out)

    code = cli.main(["run", "--set", "training.train_steps=abc", "--report-source", str(tmp_path / "no.md")])
    out = capsys.readouterr().err
    assert code == 2 and not root.exists()
    assert "--set training.train_steps=abc: training.train_steps: Input should be a valid integer" in out
    assert f"--report-source {tmp_path / 'no.md'} does not exist" in out


def test_finding6_stage_failure_message_printed_once(tmp_path, monkeypatch, capsys):
    """A failure found inside a stage (e.g. stage 03's pre-flight) is printed once, not in the
    progress line, the summary table and the error line."""
    body = ("from zagreus_utils.pipeline.errors import ZagreusError\n"
            "raise ZagreusError('pre-flight failed (1 check(s)); nothing was submitted or trained')\n")
    nbs, root = _tiny(tmp_path, body)
    monkeypatch.setattr(paths, "NOTEBOOKS", nbs)
    monkeypatch.setenv("ZAGREUS_RUNS", str(root))
    code = cli.main(["run", "--profile", "smoke", "--quiet", "--no-report"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 1 and out.count("pre-flight failed (1 check(s))") == 1, out
    assert "error: ita 01_alpha failed: ZagreusError: pre-flight failed" in captured.err


def test_finding6_report_source_checked_before_first_stage(tmp_path):
    nbs, root = _tiny(tmp_path)
    with pytest.raises(ZagreusError, match="does not exist"):
        _run(nbs, root, report_source=tmp_path / "missing.md")
    assert not root.exists()
    unreadable = tmp_path / "report.md"
    unreadable.write_text("# report\n")
    unreadable.chmod(0)
    try:
        if os.access(unreadable, os.R_OK):
            pytest.skip("running as a user who can read any file")
        with pytest.raises(ZagreusError, match="cannot be read"):
            _run(nbs, root, report_source=unreadable)
    finally:
        unreadable.chmod(0o644)
    assert not root.exists()


# --- every command line of the README ------------------------------------------------------

def _unbracket(word: str) -> str:
    """A word without the brackets of an [optional part] (``[--json]``, ``[--tokenizer DIR]``); a
    value holding brackets of its own (``data_stages=[...]``) is kept whole."""
    word = word[1:] if word.startswith("[-") else word
    return word[:-1] if word.endswith("]") and "[" not in word else word


def readme_commands() -> list[list[str]]:
    """The arguments of every `zagreus` call in the README's fenced bash blocks ([optional] parts
    included, brackets dropped)."""
    text = (paths.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():  # a command continued with a backslash
            for part in re.split(r"&&|;", line.split("#", 1)[0]):
                words = shlex.split(part)
                at = [i for i, w in enumerate(words) if w == "zagreus" or w.endswith("/zagreus")]
                if at and at[0] + 1 < len(words):  # not `cd zagreus` (the checkout's folder)
                    found.append([w for w in map(_unbracket, words[at[0] + 1:]) if w])
    return found


def test_readme_commands_work(tmp_path, monkeypatch):
    from zagreus_utils.convert import cli as convert_cli

    monkeypatch.chdir(paths.REPO_ROOT)  # the README's paths are relative to the checkout
    monkeypatch.setenv("ZAGREUS_RUNS", str(tmp_path / "runs"))
    commands = readme_commands()
    assert len(commands) >= 7 and {c[0] for c in commands} == {"run", "report", "audit", "convert", "verify",
                                                             "prefetch", "doctor"}
    for argv in commands:
        if not Path("../shared/reference/tech-report.md").is_file():  # a checkout without shared/
            stand_in = tmp_path / "tech-report.md"
            stand_in.write_text("# report\n")
            argv = [str(stand_in) if a == "../shared/reference/tech-report.md" else a for a in argv]
        if argv[0] == "convert":
            convert_cli.build_parser().parse_args(argv[1:])
            continue
        args = cli.build_parser().parse_args(argv)
        if args.command == "run" and any(a.startswith("training.init_from=") for a in argv):
            # the example's start model is a Hub id: offline and uncached, the plan says how to get it
            with pytest.raises(ZagreusError, match="not in the local Hugging Face cache; download it first"):
                cli.plan_run(args)
        elif args.command == "run":
            checked = cli.plan_run(args)  # the pre-checks, no stage
            assert checked.languages and checked.selected, argv
        elif args.command == "report":
            cli.check_report(args)
        elif args.command == "prefetch" and args.dry_run:  # offline: lists what a login node fetches
            assert cli.cmd_prefetch(args) == 0, argv
        elif args.command == "verify":  # nothing has run under the empty runs root: a clear refusal
            with pytest.raises(ZagreusError, match="no stage manifests"):
                cli.cmd_verify(args)
    assert not (tmp_path / "runs").exists()


# --- finding 3 at the runner: a result set aside is named in the run's output ----------------

MOVE_BODY = """from pathlib import Path
from zagreus_utils.model import checkpoints
out = Path(out_dir)
old = out / "checkpoints"
if old.is_dir():  # an earlier run's result: set aside as the trainer does, never deleted
    checkpoints.move_aside([old], out, "abc123", "trained on other settings (learning_rate)")
old.mkdir()
(old / "weights.bin").write_text(str(len(list(out.glob("previous/*")))))
"""


def test_finding3_set_aside_result_is_named_in_the_run_output(tmp_path):
    nbs, root = _tiny(tmp_path, MOVE_BODY)
    _run(nbs, root)
    lines: list[str] = []
    summary = _run(nbs, root, force=True, log=lines.append)
    assert [r.status for r in summary.results][:1] == ["ok"]
    (moved,) = (root / "smoke" / "ita" / "01_alpha" / "previous").iterdir()
    assert (moved / "checkpoints" / "weights.bin").read_text() == "0"  # the first run's result, kept
    said = [line for line in lines if "kept, not deleted" in line]
    assert len(said) == 1 and moved.name in said[0] and "learning_rate" in said[0], lines
    record = manifest.read(root / "smoke" / "ita" / "01_alpha")
    assert [Path(m["path"]).name for m in record["moved_aside"]] == [moved.name]
    # a later run that moves nothing names nothing (the earlier move is not announced again)
    lines.clear()
    _run(nbs, root, log=lines.append)
    assert not [line for line in lines if "kept, not deleted" in line]
