"""The ``zagreus`` command: run the pipeline, rebuild the report, verify the runs, audit a report,
prefetch what the full profile reads, and check a cluster environment (doctor)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .pipeline.errors import ZagreusError


def _overrides(items: list[str] | None) -> dict:
    from .pipeline.spec import parse_override

    return dict(parse_override(item) for item in items or [])


def plan_run(args):
    """Everything ``zagreus run`` can check before its first stage (raises naming each problem)."""
    from .pipeline import runplan

    return runplan.plan(args.profile, args.languages, args.stages, overrides=_overrides(args.set),
                        launcher=args.launcher, report_source=None if args.no_report else args.report_source)


def check_report(args) -> None:
    from .pipeline import runplan

    runplan.check_report(args.profile, args.report_source)


def cmd_run(args) -> int:
    from .pipeline import lock, runner
    from .results import report

    checked = plan_run(args)
    with lock.hold(checked.folder, runner.stderr_log):  # one run per run folder, the report included
        summary = runner.execute(checked, force=args.force, progress=not args.quiet, log=runner.stderr_log)
        out, failed_report = None, None
        if not args.no_report:
            try:
                out = report.build(args.profile, source=args.report_source)
            except ZagreusError as exc:  # the stages' table first, then why there is no report
                failed_report = exc
        print(summary.table(report=out))
        if failed_report is not None:
            raise failed_report
    if summary.failed:
        for r in summary.failed:
            where = f" (executed notebook: {r.folder / (r.stage + '.ipynb')})" if r.status == "failed" else ""
            print(f"error: {r.language or 'profile'} {r.stage} {r.status}: {r.error}{where}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    from .pipeline import manifest
    from .results import report

    check_report(args)
    out = report.build(args.profile, source=args.report_source)
    print(f"report: {manifest.relative_to_repo(out)}  ({out.resolve().as_uri()})")
    return 0


def cmd_verify(args) -> int:
    """Fully hash every output each stage manifest recorded; 1 when any changed or is missing."""
    from .pipeline import manifest, paths

    folders = manifest.stage_folders(args.profile, args.languages)
    if not folders:
        raise ZagreusError(f"no stage manifests under {paths.run_dir(args.profile or '')} "
                           f"{'for languages ' + ' '.join(args.languages) + ' ' if args.languages else ''}"
                           "to verify; run the pipeline first (zagreus run)")
    bad = 0
    for folder, profile, language in folders:
        status, changed = manifest.verify(folder)
        where = manifest.relative_to_repo(folder)
        if not changed:
            print(f"ok       {where} (status {status})")
            continue
        bad += 1
        for rel, why in changed.items():
            print(f"{'CORRUPT' if status == 'corrupt' else 'CHANGED':<8} {where}/{rel}: {why}")
        print(f"         rebuild it: {manifest.rerun_command(folder.name, profile, language)}")
    print(f"{len(folders) - bad} of {len(folders)} stage folders hold what their manifests recorded")
    return 1 if bad else 0


def cmd_audit(args) -> int:
    from .audit import core as audit

    return audit.main([args.path] + (["--json"] if args.json else []))


def _languages_help() -> str:
    """The languages there are configs for, and which of them a sample-corpus profile can run."""
    from .pipeline import runplan, spec

    known = spec.available("languages")
    sample = set(runplan.sample_languages())
    text = f"any of: {', '.join(known)}"
    need_hub = [lang for lang in known if lang not in sample]
    if need_hub:
        text += (f" ({', '.join(need_hub)}: only on a profile with data.source: hub, e.g. full; "
                 "the smoke profile's sample corpus cannot generate them)")
    return text


def _terminate(signum, frame):
    """SIGTERM (scancel, kill) ends the run like Ctrl-C: finished stages kept, the lock released."""
    raise KeyboardInterrupt


def cmd_prefetch(args) -> int:
    from .cluster import prefetch

    return prefetch.main(args.profile, args.languages, dry_run=args.dry_run)


def cmd_doctor(args) -> int:
    from .cluster import doctor

    return doctor.main(args.profile, args.languages)


def build_parser() -> argparse.ArgumentParser:
    from .pipeline import spec

    p = argparse.ArgumentParser(prog="zagreus", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run stage notebooks with papermill, per language, then build the report")
    r.add_argument("--profile", default="smoke", help=f"one of: {', '.join(spec.available('profiles'))}")
    r.add_argument("--languages", nargs="+", default=["ita"], help=_languages_help())
    r.add_argument("--stages", nargs="+", default=None, help="stage keys, names or numbers (default: all)")
    r.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    r.add_argument("--launcher", choices=["local", "slurm"], default="local")
    r.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a profile value, e.g. --set training.learning_rate=0.002 (repeatable; "
                        "checked with the profile before any stage runs)")
    r.add_argument("--report-source", type=Path, default=None,
                   help="the report's markdown, to include the audit (e.g. ../shared/reference/tech-report.md)")
    r.add_argument("--no-report", action="store_true", help="do not rebuild the HTML report afterwards")
    r.add_argument("--quiet", action="store_true", help="no per-cell progress bars")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="rebuild report/<profile>/index.html from existing runs")
    rep.add_argument("--profile", default="smoke")
    rep.add_argument("--report-source", type=Path, default=None)
    rep.set_defaults(func=cmd_report)

    v = sub.add_parser("verify", help="fully hash every output the stage manifests recorded; "
                                      "exit 1 on any changed or missing file")
    v.add_argument("--profile", default=None, help="one profile (default: every profile under the runs folder)")
    v.add_argument("--languages", nargs="+", default=None, help="only these languages' stages "
                   "(and the per-profile stages)")
    v.set_defaults(func=cmd_verify)

    a = sub.add_parser("audit", help="check a technical report (markdown) for its own consistency")
    a.add_argument("path")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_audit)

    for name, func, text in (
            ("prefetch", cmd_prefetch, "download what the profile reads at run time into HF_HOME / NLTK_DATA "
                                       "(on a login node; --dry-run lists it offline)"),
            ("doctor", cmd_doctor, "check pins, the train env, GPUs, caches, Slurm and report tasks; "
                                   "each failure with its fix")):
        c = sub.add_parser(name, help=text)
        c.add_argument("--profile", default="full", help=f"one of: {', '.join(spec.available('profiles'))}")
        c.add_argument("--languages", nargs="+", default=list(spec.available("languages")),
                       help="default: all")
        if name == "prefetch":
            c.add_argument("--dry-run", action="store_true", help="list what would be fetched (offline)")
        c.set_defaults(func=func)

    # `zagreus convert ...` has its own parser (zagreus_utils.convert.cli); listed here for --help.
    sub.add_parser("convert", add_help=False,
                   help="nanotron <-> Hugging Face checkpoints (zagreus convert -h)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["convert"]:
        from .convert.cli import main as convert_main

        return convert_main(argv[1:])
    # only while the command runs: a handler left behind would be inherited by processes forked
    # later in the same interpreter (datatrove's worker pool relies on SIGTERM ending its workers)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except ZagreusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages and their manifests are kept", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
