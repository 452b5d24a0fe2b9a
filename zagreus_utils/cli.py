"""The ``zagreus`` command: run the pipeline, rebuild the report, audit a report, prefetch and doctor."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ZagreusError


def _overrides(items: list[str] | None) -> dict:
    from .spec import parse_override

    return dict(parse_override(item) for item in items or [])


def cmd_run(args) -> int:
    from . import report, runner

    summary = runner.run(args.profile, args.languages, args.stages, force=args.force,
                         launcher=args.launcher, overrides=_overrides(args.set),
                         progress=not args.quiet, log=runner.stderr_log)
    print(summary.table())
    if not args.no_report:
        out = report.build(args.profile, source=args.report_source)
        print(f"report: {out}")
    if summary.failed:
        for r in summary.failed:
            where = f" (executed notebook: {r.folder / (r.stage + '.ipynb')})" if r.status == "failed" else ""
            print(f"error: {r.language or 'profile'} {r.stage} {r.status}: {r.error}{where}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    from . import report

    out = report.build(args.profile, source=args.report_source)
    print(f"report: {out}")
    return 0


def cmd_audit(args) -> int:
    from . import audit

    return audit.main([args.path] + (["--json"] if args.json else []))


def cmd_prefetch(args) -> int:
    from . import prefetch

    return prefetch.main(args.profile, args.languages, dry_run=args.dry_run)


def cmd_doctor(args) -> int:
    from . import doctor

    return doctor.main(args.profile, args.languages)


def build_parser() -> argparse.ArgumentParser:
    from . import spec

    p = argparse.ArgumentParser(prog="zagreus", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run stage notebooks with papermill, per language, then build the report")
    r.add_argument("--profile", default="smoke", help=f"one of: {', '.join(spec.available('profiles'))}")
    r.add_argument("--languages", nargs="+", default=["ita"],
                   help=f"any of: {', '.join(spec.available('languages'))}")
    r.add_argument("--stages", nargs="+", default=None, help="stage keys, names or numbers (default: all)")
    r.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    r.add_argument("--launcher", choices=["local", "slurm"], default="local")
    r.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a profile value, e.g. --set training.train_steps=50 (repeatable)")
    r.add_argument("--report-source", type=Path, default=None,
                   help="the report's markdown, to include the audit (e.g. ../shared/reference/tech-report.md)")
    r.add_argument("--no-report", action="store_true", help="do not rebuild the HTML report afterwards")
    r.add_argument("--quiet", action="store_true", help="no per-cell progress bars")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="rebuild report/<profile>/index.html from existing runs")
    rep.add_argument("--profile", default="smoke")
    rep.add_argument("--report-source", type=Path, default=None)
    rep.set_defaults(func=cmd_report)

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

    # `zagreus convert ...` has its own parser (zagreus_utils.convert); listed here for --help.
    sub.add_parser("convert", add_help=False,
                   help="nanotron <-> Hugging Face checkpoints (zagreus convert -h)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["convert"]:
        from .convert import main as convert_main

        return convert_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except ZagreusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages and their manifests are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
