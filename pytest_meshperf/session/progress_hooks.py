"""The hooks that watch a run's mesh tests finish: the progress line, and pairs the baseline lacked.

Registered by the session on the process that sees every report (plain pytest,
or the xdist controller), and only once mesh tests are known: which reports are
mesh tests comes from collection (``MeshItems``), never from a test's id.
"""
from __future__ import annotations

import pytest

from pytest_meshperf.reports.progress import Progress
from pytest_meshperf.session.mesh_items import MeshItems
from pytest_meshperf.verdicts.baseline import MissingPairs


class ProgressHooks:
    def __init__(self, config: pytest.Config, items: MeshItems) -> None:
        self.config = config
        self.items = items                 # mesh_items.MeshItems: the pair tests to count
        self.missing = MissingPairs()
        self.progress = Progress(len(items.sources), config.option.meshperf_progress, groups=items.rounds)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.items.sources:
            return
        self.missing.observe(report)
        if report.when == "call" or (report.when == "setup" and not report.passed):
            errored = getattr(report, "meshperf_error", False) or (report.when == "setup" and report.failed)
            self.progress.record("error" if errored else report.outcome, report.nodeid)
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None and self.progress.due():
                reporter.ensure_newline()
                writer = getattr(reporter, "_tw", None)  # xdist's dots do not pass through ensure_newline
                if writer is not None and writer.width_of_current_line:
                    reporter.write("\n")
                reporter.write_line(self.progress.line())
