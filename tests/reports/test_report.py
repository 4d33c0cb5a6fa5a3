"""The HTML report: real and generated meshes rendered, opened in headless Chromium, and read back from its DOM."""

import json
import os
import re
from pathlib import Path

import pytest

from pytest_meshperf.reports import browser
from pytest_meshperf.reports.heatmap import Cell, Heatmap, Scale, render_page, script_json
from pytest_meshperf.reports.html import write_report
from pytest_meshperf.spec.metrics import format_value

from support.commands import meshperf
from support.meshcheck import consistency_errors, iter_entries, schema_errors
from support.meshgen import generate
from support.paths import RECORDED_MESH as RECORDED
from support.report_dom import ReportDom, assert_self_contained, chromium, png_size  # noqa: F401 (a fixture)

TCP, UDP = "tests/data/report/record_suite.py::test_tcp", "tests/data/report/record_suite.py::test_udp"


def rendered(html_path, **kwargs):
    dom = ReportDom(browser.dump_dom(str(html_path), **kwargs))
    assert dom.root.get("data-rendered") == "yes", dom.root
    return dom


def assert_marked(cells):
    """Failures and errors are marked by more than colour; an error never shows a value, a gap shows nothing."""
    for pair, cell in cells.items():
        if cell["state"] == "failed":
            assert "st-failed" in cell["class"] and cell["text"].endswith("!"), (pair, cell)
        elif cell["state"] == "error":
            assert "st-error" in cell["class"] and cell["text"] in ("error", "\u00d7"), (pair, cell)
            assert not re.search(r"\d", cell["text"]) and "background" not in cell["style"], (pair, cell)
        elif cell["state"] == "none":
            assert "st-none" in cell["class"] and cell["text"] == "", (pair, cell)
        else:
            assert cell["state"] == "passed" and "background" in cell["style"] and "!" not in cell["text"], (pair, cell)


def test_recorded_three_node_run(chromium, tmp_path):
    out = write_report(str(RECORDED), str(tmp_path / "report.html"))
    assert_self_contained(Path(out).read_text())
    dom = rendered(out)
    mesh = json.loads(RECORDED.read_text())
    nodes = ["node1", "node2", "node3"]
    assert list(dom.heatmaps) == ["t0", "t1"]   # one heatmap per test, in the file's order
    for heatmap, key in (("t0", TCP), ("t1", UDP)):
        cells = dom.heatmaps[heatmap]
        assert set(cells) == {(a, b) for a in nodes for b in nodes if a != b}   # every pair, measured or not
        for (src, dst), cell in cells.items():
            entry = mesh["sources"].get(src, {}).get("destinations", {}).get(dst, {}).get("tests", {}).get(key)
            assert cell["state"] == (entry["status"] if entry else "none"), (key, src, dst)
            if entry and entry["status"] != "error":   # the figure, as metrics.format_value writes it
                assert cell["text"].startswith(format_value("throughput_bps", entry["metrics"]["throughput_bps"]))
        assert_marked(cells)
    states = {pair: c["state"] for pair, c in dom.heatmaps["t0"].items()}
    assert states[("node2", "node1")] == "error" and dom.heatmaps["t0"][("node2", "node1")]["text"] == "error"
    assert states[("node1", "node3")] == states[("node2", "node3")] == "failed"
    assert dom.heatmaps["t1"][("node3", "node2")]["state"] == "none"   # skipped in the recording
    # The other views, chosen by the address (as a link or `meshperf report --view` would): a->b against b->a.
    asym = rendered(out, fragment="view=asymmetry").heatmaps["t0"]
    bps = {(src, dst): entry["metrics"].get("throughput_bps") for src, dst, key, entry in iter_entries(mesh)
           if key == TCP}
    for (src, dst), cell in asym.items():
        if cell["state"] in ("passed", "failed") and bps.get((dst, src)):
            a, b = bps[(src, dst)], bps[(dst, src)]
            share = round((a - b) / max(a, b) * 1000) / 10
            assert cell["text"].rstrip(" !") == (f"{'+' if share > 0 else '−' if share < 0 else '±'}{abs(share):g}"
                                                 "%"), (src, dst, cell)
    assert asym[("node1", "node2")]["text"] == "no b\u2192a"   # node2->node1 is an error: nothing to compare
    text = " ".join(dom.text)
    assert "unable to set TCP_CONGESTION" in text and "throughput 25.75 Gbit/s < 1000 Tbit/s" in text
    assert "Per node (3 nodes)" in text and "CPU peak sending" in text


def test_generated_hundred_node_mesh(chromium, tmp_path):
    mesh, expected = generate(100)
    mesh_path = tmp_path / "mesh.json"
    mesh_path.write_text(json.dumps(mesh))
    out = write_report(str(mesh_path))
    assert out == str(tmp_path / "report.html")
    html_text = Path(out).read_text()
    assert_self_contained(html_text)
    assert len(html_text) < 8_000_000   # docs/performance.md: about 5 MB for 9,900 cells
    dom = rendered(out)
    (cells,) = dom.heatmaps.values()
    assert len(cells) == 9900 == len(expected)
    assert {pair: cell["state"] for pair, cell in cells.items()} == {
        pair: state or "none" for pair, state in expected.items()}
    assert_marked(cells)
    counts = {state: list(expected.values()).count(state) for state in ("failed", "error", None)}
    assert counts["failed"] >= 99 and counts["error"] >= 99 and counts[None] == 3
    names = {f"node{i}" for i in range(1, 101)}
    assert names <= dom.titles   # every node is named (labels thin out, titles do not)


def test_generated_mesh_follows_the_schema():
    mesh, _ = generate(5)
    assert schema_errors(mesh) == [] and consistency_errors(mesh) == []


EVIL_NODE = '<img src=x onerror="document.title=\'pwned\'">'
EVIL_TEST = "t.py::test_x</script><script>document.title='pwned'</script><!--"


def test_names_from_results_render_as_text(chromium, tmp_path):
    """Node names and test keys come from users' inventories and files: they are shown, never run."""
    text = RECORDED.read_text().replace('"node2"', json.dumps(EVIL_NODE)).replace(
        f'"{TCP}"', json.dumps(EVIL_TEST))
    mesh_path = tmp_path / "mesh.json"
    mesh_path.write_text(text)
    assert EVIL_NODE in json.loads(text)["cluster"]["nodes"]
    out = write_report(str(mesh_path))
    html_text = Path(out).read_text()
    assert "<img" not in html_text and "</script><script>" not in html_text
    dom = rendered(out)
    assert "img" not in dom.tags and dom.tags.count("script") == 2   # the data and report.js, nothing injected
    assert (EVIL_NODE, "node1") in dom.heatmaps["t0"] and EVIL_NODE in dom.titles
    page = " ".join(dom.text)
    assert EVIL_NODE in page and EVIL_TEST in page and "pwned" not in dom.root.get("data-render-error", "")
    assert re.search(r"<title>meshperf [^<]*</title>", browser.dump_dom(out))   # the title is still ours


def test_script_json_cannot_close_its_script_tag():
    text = script_json({"a": "</script><!--<script>&", "b": [1.5, None]})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!--<script>&", "b": [1.5, None]}


def test_heatmap_page_for_other_cells(chromium, tmp_path):
    """The matrix drawing takes any cells: here per-link deltas, as a comparison of two runs would give."""
    nodes = ["a", "b", "c"]
    cells = [Cell("a", "b", "worse", {"delta": -31.0}, {"delta": "-31%"},
                  [("Compared", [("before", "9.4 Gbit/s", "")])]),
             Cell("b", "a", "better", {"delta": 4.0}, {"delta": "+4%"}),
             Cell("c", "a", "error", {}, {}, [("Result", [("error", "gone in the new run", "bad")])])]
    deltas = Heatmap("d", "throughput change", nodes, nodes, [Scale("delta", "change", True)], cells, views=("value",))
    page = render_page("deltas", ["<h1>Deltas</h1>", deltas])
    path = tmp_path / "deltas.html"
    path.write_text(page)
    dom = rendered(path)
    found = dom.heatmaps["d"]
    assert {pair: c["state"] for pair, c in found.items()} == {
        ("a", "b"): "worse", ("b", "a"): "better", ("c", "a"): "error", ("a", "c"): "none", ("b", "c"): "none",
        ("c", "b"): "none"}
    assert found[("a", "b")]["text"] == "-31%" and found[("c", "a")]["text"] == "error"


# -- the command line ---------------------------------------------------------------------------------------

def test_report_command_writes_html_and_png(chromium, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "mesh.json").write_text(RECORDED.read_text())
    result = meshperf("report", run_dir)   # a run directory: report.html goes beside its mesh.json
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"report: {run_dir / 'report.html'}\n"
    shot = tmp_path / "shot.png"
    result = meshperf("report", RECORDED, "--png", shot, "--pin", "node1->node3")   # the documented command
    assert result.returncode == 0, result.stderr
    width, height = png_size(shot)
    assert result.stdout == f"screenshot: {shot} ({width}x{height})\n"
    assert width >= 1000 and height >= 800
    assert not (RECORDED.parent / "report.html").exists()   # --png alone writes no HTML


@pytest.mark.parametrize("args, env, fragments", [
    (["report", "{tmp}"], None, ["no mesh.json there", "give a mesh.json, a run directory or a results folder"]),
    (["report", RECORDED, "--png", "{tmp}/x.png"], {"PATH": "/nonexistent"},
     ["chromium not found", "apt-get install chromium"]),
    (["report", RECORDED, "--png", "{tmp}/x.png"], {"MESHPERF_CHROMIUM": "/no/such/chromium"},
     ["'/no/such/chromium'", "not found"]),
    (["report", RECORDED, "--png", "{tmp}/x.png", "--png-width", "20"], None, ["--png-width 20", "200 to"]),
    (["report", RECORDED, "-o", "{tmp}/no/such/dir/r.html"], None, ["-o ", "cannot write the report"]),
])
def test_report_command_mistakes_are_one_line(tmp_path, args, env, fragments):
    environ = {k: v for k, v in os.environ.items() if k != "MESHPERF_CHROMIUM"}
    environ.update(env or {})
    result = meshperf(*[str(a).replace("{tmp}", str(tmp_path)) for a in args], env=environ)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("meshperf: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


# -- after every pytest run ---------------------------------------------------------------------------------

TCP_TEST = """
import pytest

@pytest.mark.meshperf(duration=1, thresholds=["throughput>=1Gbit/s"])
def test_tcp(mesh_pair, measure):
    measure(thresholds=["throughput>=1000Tbit/s"]) if mesh_pair.src.name == "node2" else measure()
"""


def test_report_written_after_a_real_run(chromium, pytester, mesh_out):
    pytester.makepyfile(test_mesh=TCP_TEST)
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "--cluster", "local:2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["results: *mesh.json*", "report: *report.html"])
    report = mesh_out / "latest" / "report.html"
    cells = rendered(report).heatmaps["t0"]
    assert {pair: c["state"] for pair, c in cells.items()} == {("node1", "node2"): "passed",
                                                                ("node2", "node1"): "failed"}
    assert_marked(cells)


def test_a_plans_left_out_pairs_are_blank_and_its_unmeasured_ones_missing(chromium, pytester, mesh_out):
    pytester.makepyfile(test_mesh=TCP_TEST.replace('measure(thresholds=["throughput>=1000Tbit/s"]) if '
                                                   'mesh_pair.src.name == "node2" else measure()', "measure()"))
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "--cluster", "local:5", "--mesh-plan", "ring",
                                           "--deselect", "test_mesh.py::test_tcp[node3->node4]")
    result.assert_outcomes(passed=4)
    report = mesh_out / "latest" / "report.html"
    assert re.search(r'data-count="missing"><b>1</b>', report.read_text()), "one planned pair was not measured"
    dom = rendered(report)
    cells = dom.heatmaps["t0"]
    ring = {("node1", "node2"), ("node2", "node3"), ("node4", "node5"), ("node5", "node1")}
    assert {pair for pair, c in cells.items() if c["state"] == "passed"} == ring
    assert cells[("node3", "node4")]["state"] == "none" and "st-none" in cells[("node3", "node4")]["class"]
    blank = {pair: c for pair, c in cells.items() if c["state"] == "unplanned"}
    assert len(blank) == 20 - 5 and all("st-blank" in c["class"] and c["text"] == "" for c in blank.values())
    assert "not in the plan" in "".join(dom.text)  # the legend names it


def test_no_report_when_switched_off(pytester, mesh_out):
    pytester.makepyfile(test_mesh=TCP_TEST)
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "--cluster", "local:2", "--mesh-report=no",
                                           "-k", "node1-")
    assert result.ret == 0 and "report:" not in result.stdout.str()
    assert (mesh_out / "latest" / "mesh.json").exists() and not (mesh_out / "latest" / "report.html").exists()


def test_a_failing_report_loses_nothing(pytester, mesh_out):
    # The disk fills up while the report is written (injected: the only way to make it fail on demand).
    pytester.makeconftest("""
        import errno
        import pytest_meshperf.reports.html as html

        def full_disk(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        html.write_report = full_disk
    """)
    pytester.makepyfile(test_mesh=TCP_TEST)
    result = pytester.runpytest_subprocess("--mesh-out", str(mesh_out), "--cluster", "local:2", "-k", "node1-")
    assert result.ret == 0   # the exit status is the tests' alone
    result.stdout.fnmatch_lines(["meshperf: report not written: OSError: [[]Errno 28[]] No space left on device "
                                 "(mesh.json is complete; retry with: meshperf report *mesh.json)"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert json.loads((mesh_out / "latest" / "mesh.json").read_text())["run"]["exit_status"] == 0
