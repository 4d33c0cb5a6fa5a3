"""``meshperf compare --html``: a comparison of two runs as a self-contained page, checked in headless Chromium.

The runs are the two real mesh.json files recorded on the netns testbed (tests/data/compare/, how they were
made is in tests/data/README.md): node1->node2 slowed to half, node2->node3 an error, node3->node1 not run.
"""

import re

import pytest

from pytest_meshperf.reports import browser
from pytest_meshperf.reports.comparison_html import comparison_page
from pytest_meshperf.reports.heatmap import Cell, Heatmap, Scale, render_page
from pytest_meshperf.verdicts.compare import compare_results

from support.commands import meshperf
from support.paths import BASELINE, SLOW_LINK
from support.report_dom import ReportDom, assert_self_contained, chromium, png_size  # noqa: F401 (a fixture)

NODES = ("node1", "node2", "node3")
PAIRS = {(a, b) for a in NODES for b in NODES if a != b}


def render(tmp_path, old, new, fragment=""):
    """The page of ``old`` -> ``new``, its DOM after report.js ran, and the page's text."""
    page = comparison_page(compare_results(str(old), str(new), tolerance=0.1))
    path = tmp_path / "compare.html"
    path.write_text(page)
    text = browser.dump_dom(str(path), fragment=fragment)
    dom = ReportDom(text)
    assert dom.root.get("data-rendered") == "yes", dom.root
    return page, dom, text


def rgb(cell):
    return tuple(int(x) for x in re.search(r"rgb\((\d+), (\d+), (\d+)\)", cell["style"]).groups())


def test_regression_page_of_recorded_runs(chromium, tmp_path):
    page, dom, text = render(tmp_path, BASELINE, SLOW_LINK, fragment="pin=node1->node2")
    assert_self_contained(page)
    cells = dom.heatmaps["c0"]   # the recording's one test
    assert {pair: c["state"] for pair, c in cells.items()} == {
        ("node1", "node2"): "regressed", ("node2", "node3"): "error_in_new", ("node3", "node1"): "missing_in_new",
        ("node2", "node1"): "ok", ("node3", "node2"): "ok", ("node1", "node3"): "ok"}
    slow, broken, gone = cells[("node1", "node2")], cells[("node2", "node3")], cells[("node3", "node1")]
    # marked beyond colour: outlined with "!"; red (worse), whichever way the metric runs
    assert "st-failed" in slow["class"] and slow["text"] == "-49.4% !" and rgb(slow)[0] > 2 * rgb(slow)[2]
    assert "st-error" in broken["class"] and broken["text"] == "error now" and "background" not in broken["style"]
    assert "st-missing" in gone["class"] and gone["text"] == "gone" and not re.search(r"\d", gone["text"])
    for pair in (("node2", "node1"), ("node3", "node2"), ("node1", "node3")):
        assert "st-ok" in cells[pair]["class"] and re.fullmatch(r"\+0\.[0-3]%", cells[pair]["text"]), cells[pair]
    # the pinned link's details: both values (metrics.format_value), the change and the status
    shown = " ".join(dom.text)
    assert "node1 \u2192 node2" in shown and "192.6 Mbit/s" in shown and "97.53 Mbit/s" in shown
    assert "REGRESSED" not in shown and "regressed" in shown   # the badge's text (CSS makes it upper case)
    # the regressions table, worst first; the summary's counts
    assert re.findall(r'<tr data-status="(\w+)" data-link="([^"]+)"', text) == [
        ("regressed", "node1-&gt;node2"), ("error_in_new", "node2-&gt;node3")]
    assert "unable to set TCP_CONGESTION" in text
    counts = dict(re.findall(r'data-count="(\w+)"><b>(\d+)</b>', text))
    assert counts == {"compared": "6", "regressed": "1", "error_in_new": "1", "missing_in_new": "1", "improved": "0",
                      "ok": "3", "missing_in_old": "0", "error_in_old": "0"}
    assert str(BASELINE) in text and "20261122T091615Z-cdbf" in text and "rate.node1-&gt;node2=100mbit" in text


def test_the_other_states_are_distinct_too(chromium, tmp_path):
    """The same runs the other way round: the slow link improved, the error was in the old run."""
    page, dom, _ = render(tmp_path, SLOW_LINK, BASELINE)
    old, new = (compare_results(str(path), str(path)).changes for path in (SLOW_LINK, BASELINE))
    bps = [{(c.src, c.dst): c.new for c in changes} for changes in (old, new)]   # each run's own figures
    gain = bps[1][("node1", "node2")] / bps[0][("node1", "node2")] - 1.0
    cells = dom.heatmaps["c0"]
    assert set(cells) == PAIRS
    faster, fixed, new = cells[("node1", "node2")], cells[("node2", "node3")], cells[("node3", "node1")]
    assert faster["state"] == "improved" and faster["text"] == "%+.1f%%" % (100 * gain) and gain > 0.9 and rgb(faster)[2] > 2 * rgb(faster)[0]
    assert fixed["state"] == "error_in_old" and fixed["text"] == "was error" and "st-missing" in fixed["class"]
    assert new["state"] == "missing_in_old" and new["text"] == "new" and "st-missing" in new["class"]
    assert "No link got worse than the tolerance" in page


@pytest.mark.parametrize("change, bad", [(0.5, True), (-0.5, False)])
def test_change_colour_follows_the_metric_direction(chromium, tmp_path, change, bad):
    """Latency (lower is better) 50% up is red, 50% down blue: the colour is by worse_by, not by sign."""
    cells = [Cell("a", "b", "ok", {"latency_p99_us": change}, {"latency_p99_us": f"{100 * change:+.1f}%"})]
    hm = Heatmap("d", "latency", ["a", "b"], ["a", "b"], [Scale("latency_p99_us", "p99", False)], cells,
                 views=("change",))
    path = tmp_path / "d.html"
    path.write_text(render_page("d", [hm]))
    red, _, blue = rgb(ReportDom(browser.dump_dom(str(path))).heatmaps["d"][("a", "b")])
    assert (red > 2 * blue) if bad else (blue > 2 * red)


def test_compare_html_and_png_keep_the_exit_status(chromium, tmp_path):
    page, shot = tmp_path / "compare.html", tmp_path / "compare.png"
    result = meshperf("compare", BASELINE, SLOW_LINK, "--html", page, "--png", shot, "--pin", "node1->node2")
    assert result.returncode == 1, result.stderr   # the regression still fails, with --html too
    width, height = png_size(shot)
    assert result.stdout.endswith(f"report: {page}\nscreenshot: {shot} ({width}x{height})\n")
    assert "regressed       node1->node2" in result.stdout and 'data-status="regressed"' in page.read_text()


@pytest.mark.parametrize("option", ["--html", "--png"])
def test_compare_output_mistake_is_one_line(tmp_path, option):
    bad = tmp_path / "no" / "such" / "dir" / ("c.html" if option == "--html" else "c.png")
    result = meshperf("compare", BASELINE, SLOW_LINK, option, bad)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"meshperf: {option} {bad}: cannot write the "), result.stderr
