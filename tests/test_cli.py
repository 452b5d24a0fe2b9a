"""User mistakes at the command line: one clear `error:` line, non-zero exit, nothing removed."""
import subprocess
import sys

from zagreus_utils import cli


def _main(capsys, *argv):
    code = cli.main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_unknown_language(capsys):
    code, err = _main(capsys, "run", "--profile", "smoke", "--languages", "deu", "--no-report")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: unknown language 'deu'") and "fra, ita, por, spa" in err[0]


def test_unknown_profile_and_bad_override(capsys):
    code, err = _main(capsys, "run", "--profile", "huge", "--no-report")
    assert code == 2 and "Valid profiles: full, smoke" in err[0]
    code, err = _main(capsys, "run", "--set", "training.stepz=3", "--no-report")
    assert code == 2 and "no key 'stepz'" in err[0]


def test_unknown_stage(capsys):
    code, err = _main(capsys, "run", "--stages", "nope", "--no-report")
    assert code == 2 and "unknown stage 'nope'" in err[0] and "plots" in err[0]


def test_report_without_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ZAGREUS_RUNS", str(tmp_path / "runs"))
    code, err = _main(capsys, "report", "--profile", "smoke")
    assert code == 2 and "no runs for profile 'smoke'" in err[0] and "zagreus run --profile smoke" in err[0]


def test_report_source_that_does_not_exist(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ZAGREUS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("ZAGREUS_REPORT_DIR", str(tmp_path / "report"))
    (tmp_path / "runs" / "smoke").mkdir(parents=True)
    code, err = _main(capsys, "report", "--profile", "smoke", "--report-source", str(tmp_path / "nope.md"))
    assert code == 2 and len(err) == 1


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "zagreus_utils.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout and "audit" in out.stdout


def test_sigterm_handler_is_restored_after_the_command(capsys):
    """`zagreus` turns SIGTERM into Ctrl-C only while its command runs: left installed, the handler
    is inherited by processes forked later in the same interpreter, and a multiprocessing pool's
    terminate() (datatrove's local executor) then waits forever for workers that no longer die."""
    import multiprocessing
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["run", "--profile", "smoke", "--languages", "klingon"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before
    with multiprocessing.get_context("fork").Pool(2) as pool:  # __exit__ terminates the workers
        assert pool.map(abs, [-1, -2]) == [1, 2]
