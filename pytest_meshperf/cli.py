"""The ``meshperf`` command: operations on results and runs outside pytest.

Measuring is pytest's job (``pytest suites/``).  Cluster operations (check,
deploy, start, stop, status) and HTML reports arrive with the SSH transport and
the reports work; this module gets a sub-command each.
"""

import argparse
import os
import sys
import time

from . import __version__
from .reports.terminal import summary_lines
from .results import RunDir, assemble, load_rows, resolve


def cmd_summary(args):
    try:
        mesh_path = resolve(args.result)
    except FileNotFoundError:
        return _fail("%s: no mesh.json there; give a mesh.json, a run directory or a results folder" % args.result)
    nodes, rows, counts = load_rows(mesh_path)
    print("\n".join(summary_lines(nodes, rows, counts, mesh_path, os.getcwd())).lstrip("\n"))
    problems = [(row, message) for row in rows for message in row.messages]
    if problems:
        print("\nfailures and errors:")
        for row, message in problems:
            print("  %s %s->%s: %s" % (row.status.upper(), row.src, row.dst, message))
    return 1 if counts.get("failed") or counts.get("error") else 0


def cmd_assemble(args):
    run_path = os.path.abspath(args.run_dir)
    if not os.path.isfile(os.path.join(run_path, "run.json")):
        return _fail("%s: not a meshperf run directory (no run.json); give <mesh-out>/<run-id>" % args.run_dir)
    run_dir = RunDir(os.path.dirname(run_path), os.path.basename(run_path))
    meta = run_dir.read_meta()["run"]
    # Rebuilt after the fact: the run did not finish itself, so it counts as interrupted.
    assembled = assemble(run_dir, time.time(), interrupted=True, exit_status=meta.get("exit_status"))
    print("%s: %d measurements (%d passed, %d failed, %d errors)" % (
        assembled.path, len(assembled.rows), assembled.counts.get("passed", 0), assembled.counts.get("failed", 0),
        assembled.counts.get("error", 0)))
    return 0


def _fail(message):
    sys.stderr.write("meshperf: %s\n" % message)
    return 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="meshperf", description="meshperf: a network measured as a full mesh. Measure with "
                                     "'pytest suites/'; this command works with the results.")
    parser.add_argument("--version", action="version", version="meshperf %s" % __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    summary = sub.add_parser("summary", help="print the mesh matrix of a run",
                             description="Print a run's mesh as matrices (rows source, columns destination). "
                                         "Exit status 1 when any test failed or errored.")
    summary.add_argument("result", nargs="?", default="meshperf-results",
                         help="mesh.json, run directory, or results folder (its latest run); "
                              "default: meshperf-results")
    summary.set_defaults(func=cmd_summary)
    rebuild = sub.add_parser("assemble", help="rebuild mesh.json and mesh.csv of a run from its journal",
                             description="Rebuild a run's mesh.json and mesh.csv from its journal, e.g. after "
                                         "the pytest process was killed before it could write them.")
    rebuild.add_argument("run_dir", help="the run directory, <mesh-out>/<run-id>")
    rebuild.set_defaults(func=cmd_assemble)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
