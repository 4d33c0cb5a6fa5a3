"""The ``meshperf`` command: cluster operations and results, outside pytest.

Measuring is pytest's job (``pytest --cluster hosts.yaml suites/`` checks,
deploys, starts, measures and stops by itself).  These sub-commands do the
steps by hand, following netperf-orchestrate's workflow: check, deploy, start,
status, stop; and work with results: summary, report, assemble, export.  The operations live in
``operations.py``; this module parses arguments and formats output.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from pytest_meshperf import __version__
from pytest_meshperf.cluster.inventory import is_testbed_spec, load_cluster
from pytest_meshperf.control import operations
from pytest_meshperf.errors import UsageError
from pytest_meshperf.reports import browser, cli_json
from pytest_meshperf.reports import html as html_report
from pytest_meshperf.reports.comparison import comparison_lines
from pytest_meshperf.reports.comparison_html import comparison_page
from pytest_meshperf.reports.terminal import summary_lines, terminal_width, wrapped
from pytest_meshperf.results.assemble import assemble
from pytest_meshperf.results.export import export_path, write_export
from pytest_meshperf.results.openmetrics import write_openmetrics
from pytest_meshperf.results.read import load_summary, resolve_mesh
from pytest_meshperf.results.rundir import RunDir
from pytest_meshperf.session.options import OPTIONS, argparse_attrs
from pytest_meshperf.spec.metrics import resolve_metric
from pytest_meshperf.tools import TOOLS
from pytest_meshperf.transport.options import ssh_options_from
from pytest_meshperf.verdicts.compare import DEFAULT_TOLERANCE, compare_results, parse_metrics, parse_tolerance

MARKS = ("\u2713", "\u2717")        # ok, failed
ASCII_MARKS = ("+", "x")            # where the terminal cannot encode them (LANG=C, a cp1252 console)
INTERRUPTED_EXIT = 130              # 128 + SIGINT, as shells report it


def marks() -> tuple[str, str]:
    """The ok/failed marks this stdout can print."""
    try:
        "".join(MARKS).encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS
    return MARKS


def say(args: argparse.Namespace, text: str = "", **kwargs: Any) -> None:
    """A human line: on stdout, or on stderr when stdout carries the --json document."""
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout, **kwargs)


def cmd_summary(args: argparse.Namespace) -> int:
    mesh_path = resolve_mesh(args.result)
    nodes, rows, counts, findings = load_summary(mesh_path)
    if args.json:
        cli_json.emit(cli_json.summary_document(mesh_path, nodes, rows, counts, findings))
        return 1 if counts.get("failed") or counts.get("error") else 0
    width = None if args.full else args.width or terminal_width()
    print("\n".join(summary_lines(nodes, rows, counts, mesh_path, os.getcwd(), width, findings)).lstrip("\n"))
    problems = [(row, message) for row in rows for message in row.messages]
    if problems:
        print("\nfailures and errors:")
        for row, message in problems:
            print("\n".join(wrapped(f"  {row.status.upper()} {row.src}->{row.dst}: {message}", width, "      ")))
    return 1 if counts.get("failed") or counts.get("error") else 0


def cmd_report(args: argparse.Namespace) -> int:
    mesh_path = resolve_mesh(args.result)
    if args.metric:
        try:
            args.metric = resolve_metric(args.metric).name
        except UsageError as exc:
            raise UsageError(f"--metric: {exc}")
    try:
        mesh = html_report.load_mesh(mesh_path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{mesh_path}: not a readable mesh.json ({exc})")
    page = html_report.build_report(mesh, mesh_path)
    return _publish(args, page, args.output or (None if args.png else html_report.beside(mesh_path)), "-o",
                    _fragment(pin=args.pin, view=args.view, metric=args.metric))


def _fragment(**asked):
    """report.js's #pin=SRC->DST&view=...&metric=...: what a screenshot shows."""
    return "&".join(f"{name}={urllib.parse.quote(value, safe='>-')}" for name, value in asked.items() if value)


def _publish(args, page, out_path, option, fragment=""):
    """Write ``page`` to ``out_path`` (None: only --png was asked for, the page is a temporary file) and take
    the --png screenshot (``fragment``: report.js's #pin=...&view=...); returns 0."""
    folder = os.path.dirname(os.path.abspath(args.png)) if args.png else None
    if folder and not os.path.isdir(folder):   # found before Chromium starts, not as "wrote no screenshot"
        raise UsageError(f"--png {args.png}: cannot write the screenshot: no directory {folder}")
    if not out_path:
        with tempfile.TemporaryDirectory(prefix="meshperf-report-") as tmp:
            return _screenshot(args, _save(page, os.path.join(tmp, html_report.REPORT_FILE), option), fragment)
    out = _save(page, out_path, option)
    say(args, f"report: {out}")
    return _screenshot(args, out, fragment) if args.png else 0


def _save(page, path, option):
    try:
        return html_report.save_page(page, path)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write the report: {exc.strerror or exc}")


def _screenshot(args, html_path, fragment):
    png, (width, height) = browser.full_page_screenshot(html_path, args.png, getattr(args, "png_width", None),
                                                        getattr(args, "png_height", None), fragment)
    say(args, f"screenshot: {png} ({width}x{height})")
    return 0


def cmd_assemble(args: argparse.Namespace) -> int:
    run_path = os.path.abspath(args.run_dir)
    if not os.path.isfile(os.path.join(run_path, "run.json")):
        return _fail(f"{args.run_dir}: not a meshperf run directory (no run.json); give <mesh-out>/<run-id>")
    run_dir = RunDir(os.path.dirname(run_path), os.path.basename(run_path))
    meta = run_dir.read_meta()["run"]
    # Rebuilt after the fact: the run did not finish itself, so it counts as interrupted.
    assembled = assemble(run_dir, time.time(), interrupted=True, exit_status=meta.get("exit_status"))
    print(f"{assembled.path}: {len(assembled.rows)} measurements ({assembled.counts.get('passed', 0)} passed, "
          f"{assembled.counts.get('failed', 0)} failed, {assembled.counts.get('error', 0)} errors)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    tolerance = parse_tolerance(args.max_regression, "--max-regression") if args.max_regression is not None \
        else DEFAULT_TOLERANCE
    comparison = compare_results(args.old, args.new, tolerance, parse_metrics(args.metric, "--metric"))
    if args.json:
        cli_json.emit(cli_json.compare_document(comparison))
    else:
        print("\n".join(comparison_lines(comparison)))
    if args.html or args.png:
        _publish(args, comparison_page(comparison), args.html, "--html", _fragment(pin=args.pin))
    return 1 if comparison.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    mesh_path = resolve_mesh(args.result)
    if args.format == "openmetrics":
        series = write_openmetrics(mesh_path, args.file)
        if args.file != "-":
            print(f"{args.file}: {series} series, OpenMetrics (from {mesh_path})")
        return 0
    count = write_export(mesh_path, export_path(args.file, os.getcwd(), "meshperf export"))
    print(f"{args.file}: {count} entries (from {mesh_path})")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab  # only here: completion scripts are generated once, at install time
    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0


def _cluster_and_options(args):
    if is_testbed_spec(args.cluster):
        raise UsageError(f"--cluster {args.cluster}: a netns testbed lives only as long as the pytest run that builds "
                         "it; use its hosts.yaml here, or --cluster local:N")
    cluster = load_cluster(args.cluster, os.getcwd())
    options = ssh_options_from(args, os.getcwd())
    if args.verbose:
        lock = threading.Lock()

        def echo(line):
            with lock:
                say(args, f"    {line}", flush=True)
        options.echo = echo
    return cluster, options


def _print_hosts(results, width=None):
    width = width or max(len(r.node.name) for r in results)
    ok, failed = marks()
    for r in results:
        print(f"  {ok if r.ok else failed} {r.node.name:<{width}} ({r.node.address})  {r.message}")


def cmd_check(args: argparse.Namespace) -> int:
    cluster, options = _cluster_and_options(args)
    say(args, f"Checking {len(cluster.nodes)} hosts...", flush=True)
    results = operations.check(cluster, options, required=args.tool or ())
    spread = operations.clock_spread_s(results)
    online = sum(r.ok for r in results)
    if args.json:
        cli_json.emit(cli_json.check_document(cluster, results, spread))
        return 0 if online == len(results) else 1
    _print_hosts(results)
    print()
    if spread is not None:
        advice = "  (sync clocks with NTP: timestamps in results compare across nodes)" if spread > 0.1 else ""
        print(f"Clock offset between nodes: {spread:.3f} s{advice}")
    print(f"Result: {online}/{len(results)} hosts online")
    return 0 if online == len(results) else 1


def _per_host(args, title, operation, outcome, **kwargs):
    """Run a per-host operation with a heading, one line per host and a result line."""
    cluster, options = _cluster_and_options(args)
    print(f"{title} {len(cluster.nodes)} hosts...", flush=True)
    results = operation(cluster, options, **kwargs)
    _print_hosts(results)
    print(f"\nResult: {sum(r.ok for r in results)}/{len(results)} {outcome}")
    return 0 if all(r.ok for r in results) else 1


def cmd_deploy(args: argparse.Namespace) -> int:
    return _per_host(args, "Deploying the meshperf agent to", operations.deploy, "hosts deployed")


def cmd_start(args: argparse.Namespace) -> int:
    return _per_host(args, "Starting meshperf agents on", operations.start, "agents started", lease_s=args.lease)


def cmd_stop(args: argparse.Namespace) -> int:
    return _per_host(args, "Stopping meshperf agents on", operations.stop, "hosts clean", everything=args.all)


def cmd_status(args: argparse.Namespace) -> int:
    cluster, options = _cluster_and_options(args)
    results = operations.status(cluster, options)
    if args.json:
        cli_json.emit(cli_json.status_document(cluster, results))
        return 0 if all(r.ok for r in results) else 1
    print("Agent status:")
    width = max(len(r.node.name) for r in results)
    for r in results:
        print(f"  {r.node.name:<{width}} : {r.message}")
    return 0 if all(r.ok for r in results) else 1


def _fail(message):
    sys.stderr.write(f"meshperf: {message}\n")
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshperf", description="meshperf: a network measured as a full mesh. Measure with "
                                     "'pytest --cluster hosts.yaml suites/' (it does every step by itself); these "
                                     "commands do the steps by hand and work with the results.")
    parser.add_argument("--version", action="version", version=f"meshperf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cluster_args = argparse.ArgumentParser(add_help=False)
    group = cluster_args.add_argument_group("cluster and SSH")
    group.add_argument("--cluster", metavar="SPEC", default=None,
                       help="hosts.yaml path, or local:N (default: local:3), as pytest's --cluster")
    group.add_argument("-v", "--verbose", action="store_true", help="show every remote command")
    for option in OPTIONS:   # the SSH options of pytest's (options.py), with their defaults: no ini file here
        if option.group == "meshperf-ssh":
            group.add_argument(*option.flags, **argparse_attrs(option, option.default))

    for name, func, text, extra in (
            ("check", cmd_check, "check every host: SSH, python3, tool versions, clock offset, host key",
             "Exit status 1 when any host failed."),
            ("deploy", cmd_deploy, "ship the agent (and --local-iperf3/-netperf/-netserver) to every host; idempotent",
             "Copies the agent into <remote dir>/agent/<version>-<hash>/ on each host (--mesh-remote-dir, "
             "default ~/.meshperf). A second deploy of the same version transfers nothing."),
            ("start", cmd_start, "start an agent on every host (PIDs shown)",
             "Starts agents that outlive this command (until stop, or until --lease passes without contact). "
             "Their secret, PIDs and ports are kept in ~/.meshperf/state/ (readable by you only)."),
            ("status", cmd_status, "show the agents started by 'meshperf start': health, tools, CPU, memory",
             "Exit status 1 when any agent is not running."),
            ("stop", cmd_stop, "stop the agents started by 'meshperf start' (and their tool processes)",
             "With --all, also every other meshperf agent of this user on the hosts.")):
        command = sub.add_parser(name, parents=[cluster_args], help=text, description=text + ". " + extra)
        command.set_defaults(func=func)
        if name in ("check", "status"):
            command.add_argument("--json", action="store_true",
                                 help=f"print one JSON document (schema/{name}.schema.json) and nothing else on stdout")
        if name == "check":
            command.add_argument("--tool", action="append", choices=sorted(TOOLS), metavar="TOOL",
                                 help="a tool the hosts must have (repeatable: iperf3, netperf); without it a "
                                      "host fails only when no tool works, and a missing one is shown with its "
                                      "install hint")
        if name == "start":
            command.add_argument("--lease", type=float, default=operations.DEFAULT_CLI_LEASE_S, metavar="SECONDS",
                                 help="agents stop by themselves after this long without contact (default: 3600)")
        if name == "stop":
            command.add_argument("--all", action="store_true",
                                 help="stop every meshperf agent of this user on the hosts")
    summary = sub.add_parser("summary", help="print the mesh matrix of a run",
                             description="Print a run's mesh as matrices (rows source, columns destination). "
                                         "Exit status 1 when any test failed or errored.")
    summary.add_argument("result", nargs="?", default="meshperf-results",
                         help="mesh.json, run directory, or results folder (its latest run); "
                              "default: meshperf-results")
    summary.add_argument("--json", action="store_true", help="print one JSON document (schema/summary.schema.json): "
                                                             "every link's status, metrics and messages")
    summary.add_argument("--full", action="store_true",
                         help="every matrix in full, however wide (default on a terminal: a matrix wider than it is "
                              "shown one character per link, with the worst links and each node's medians)")
    summary.add_argument("--width", type=int, metavar="COLUMNS",
                         help="fit COLUMNS as on a terminal that wide, also when writing to a pipe or a file")
    summary.set_defaults(func=cmd_summary)
    compare = sub.add_parser(
        "compare", help="per-link changes between two runs; exit status 1 on a regression",
        description="Compare two runs link by link (test, source, destination) and metric, worst first. Exit "
                    "status 1 when a metric of a link got worse by more than --max-regression (direction-aware: "
                    "lower throughput, higher latency, jitter or loss is worse) or a link that measured before "
                    "now errors; a link missing from either run is listed, not failed. --html also writes it as a "
                    "page of per-link change heatmaps, --png a screenshot of that page.")
    compare.add_argument("old", metavar="OLD", help="the baseline: mesh.json, run directory or results folder")
    compare.add_argument("new", metavar="NEW", help="the run to judge: mesh.json, run directory or results folder")
    compare.add_argument("--max-regression", metavar="PERCENT",
                         help="how much worse a metric may get, e.g. 5%% (default: 10%%)")
    compare.add_argument("--metric", action="append", metavar="METRIC",
                         help="compare this metric (name or alias, repeatable or comma-separated; default: each "
                              "test's main metrics: throughput, reverse throughput, transaction rate, p50 and p99 "
                              "latency, loss, jitter)")
    compare.add_argument("--html", metavar="FILE",
                         help="also write the comparison as one self-contained HTML page: both runs, the "
                              "regressions, a heatmap of each test's per-link changes")
    compare.add_argument("--png", metavar="FILE",
                         help="also save a screenshot of that page (needs chromium; without --html no page is kept)")
    compare.add_argument("--pin", metavar="SRC->DST", help="screenshot with this link's details open")
    compare.add_argument("--json", action="store_true", help="print one JSON document (schema/compare.schema.json): "
                                                             "every change, worst first")
    compare.set_defaults(func=cmd_compare)
    report = sub.add_parser("report", help="write a run's HTML report (heatmaps, per-node view, failures)",
                            description="Write a run's mesh as one self-contained HTML page: the run summary, a "
                                        "heatmap per test (rows source, columns destination; choose the metric; "
                                        "hover or click a cell for its details), per-node medians and CPU peaks, "
                                        "the failures and errors. pytest writes it beside mesh.json after every "
                                        "run. --png takes a screenshot with headless Chromium.")
    report.add_argument("result", nargs="?", default="meshperf-results",
                        help="mesh.json, run directory, or results folder (its latest run); default: meshperf-results")
    report.add_argument("-o", "--output", metavar="FILE",
                        help="where the HTML goes (default: report.html beside mesh.json; with --png alone: none)")
    report.add_argument("--png", metavar="FILE", help="also save a screenshot of the report (needs chromium)")
    report.add_argument("--png-width", type=int, metavar="PIXELS",
                        help="screenshot width (default: as wide as the widest heatmap and its details need)")
    report.add_argument("--png-height", type=int, metavar="PIXELS",
                        help=f"screenshot height (default: the whole page, up to {browser.MAX_PNG_HEIGHT})")
    report.add_argument("--pin", metavar="SRC->DST", help="screenshot with this pair's details open")
    report.add_argument("--view", choices=("value", "median", "asymmetry"),
                        help="screenshot with the heatmaps showing values (default), each pair against the test's "
                             "median, or a->b against b->a")
    report.add_argument("--metric", metavar="NAME",
                        help="screenshot with the heatmaps coloured by this metric where they have it, e.g. "
                             "retransmits (default: throughput, else latency, else transaction rate)")
    report.set_defaults(func=cmd_report)
    rebuild = sub.add_parser("assemble", help="rebuild mesh.json and mesh.csv of a run from its journal",
                             description="Rebuild a run's mesh.json and mesh.csv from its journal, e.g. after "
                                         "the pytest process was killed before it could write them.")
    rebuild.add_argument("run_dir", help="the run directory, <mesh-out>/<run-id>")
    rebuild.set_defaults(func=cmd_assemble)
    export = sub.add_parser("export", help="write a run's measurements as JSON (netperf-orchestrate's --export "
                                           "format) or OpenMetrics text (Prometheus)",
                            description="Write a run's measurements as a flat JSON list (client, server, "
                                        "client_address, server_address, success, exit_code, elapsed_time, stdout, "
                                        "command, then test, instance, status, error), as --mesh-export does; or, "
                                        "with --format openmetrics, as OpenMetrics text: one gauge family per "
                                        "metric labelled test, src, dst and tool, for node_exporter's textfile "
                                        "collector (FILE.prom, replaced atomically) or a Pushgateway (FILE -).")
    export.add_argument("result", help="mesh.json, run directory, or results folder (its latest run)")
    export.add_argument("file", help="the file to write (with --format openmetrics, - is stdout)")
    export.add_argument("--format", choices=("json", "openmetrics"), default="json",
                        help="json (default: netperf-orchestrate's format) or openmetrics")
    export.set_defaults(func=cmd_export)
    completion = sub.add_parser("completion", help="print a shell completion script (bash, zsh, tcsh)",
                                description="Print meshperf's shell completion script, e.g. "
                                            "meshperf completion bash > /etc/bash_completion.d/meshperf")
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell")
    completion.set_defaults(func=cmd_completion)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):   # a character the terminal cannot show is escaped, never a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except UsageError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")
        sys.stdout.flush()
        sys.stderr.flush()
        # Now, not at interpreter exit: that would wait for threads still in an SSH connect (up to its time-out).
        os._exit(INTERRUPTED_EXIT)
    except BrokenPipeError:  # e.g. meshperf status | head
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
