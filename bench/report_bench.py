"""The HTML report's cost: generation time and file size in Python, render time in headless Chromium.

    .venv/bin/python bench/report_bench.py [--nodes 3,30,100] [--raw] [--repeat 3]

Meshes are made by tests/support/meshgen.py (the recorded 3-node run's TCP entry, rewritten per pair); --raw keeps
the recorded iperf3 JSON in every entry, as a real mesh.json has it (mesh.json then grows about 5 kB per
pair, the report does not).  Per size it prints the mesh.json size, the time to load it and build the page
(best of --repeat), the report's size, the page's own render time (report.js, reported by the page) and the
wall time of one `chromium --dump-dom` (browser start included).
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "support"))

from meshgen import generate  # noqa: E402

from pytest_meshperf.reports import browser  # noqa: E402
from pytest_meshperf.reports.html import write_report  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="3,30,100")
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'nodes':>6} {'cells':>8} {'mesh.json':>11} {'build (s)':>12} {'report':>11} {'render ms':>10} "
          f"{'dump-dom s':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for nodes in (int(n) for n in args.nodes.split(",")):
            mesh, _ = generate(nodes, raw=args.raw)
            mesh_path = os.path.join(tmp, f"mesh-{nodes}.json")
            with open(mesh_path, "w") as handle:
                json.dump(mesh, handle)
            del mesh
            out = os.path.join(tmp, f"report-{nodes}.html")
            best = min(_timed(write_report, mesh_path, out) for _ in range(args.repeat))
            started = time.perf_counter()
            dom = browser.dump_dom(out)
            dump_s = time.perf_counter() - started
            render_ms = re.search(r'data-render-ms="(\d+)"', dom[:2000])
            print(f"{nodes:6d} {nodes * (nodes - 1):8d} {os.path.getsize(mesh_path) / 1e6:8.1f} MB {best:12.2f} "
                  f"{os.path.getsize(out) / 1e6:8.2f} MB {render_ms.group(1) if render_ms else '?'!s:>10} "
                  f"{dump_s:11.1f}")


def _timed(func, *args):
    started = time.perf_counter()
    func(*args)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
