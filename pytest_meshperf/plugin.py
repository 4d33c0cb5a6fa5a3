"""pytest hooks, and nothing else: each hook hands its work to the module that owns it.

Every hook is a no-op until a mesh test is collected (session/lifecycle.py): a repository's
other tests run as if meshperf were not installed.
"""
from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from pytest_meshperf import hookspecs
from pytest_meshperf.errors import MeasurementError, UsageError
from pytest_meshperf.session import options
from pytest_meshperf.session.fixtures import measure, mesh_pair  # noqa: F401  (fixtures pytest must see)
from pytest_meshperf.session.lifecycle import STATE_KEY, MeshState, state_of
from pytest_meshperf.session.mesh_items import is_mesh_item


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        options.yield_taken_flags(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "meshperf(profile=None, thresholds=None, **params): parameters and thresholds of a mesh "
                   "measurement (tool, duration, parallel, reverse, bidir, udp, bitrate, omit, test, args, ...)")
    if config.option.help or config.option.version:
        return
    if config.pluginmanager.hasplugin("xdist"):   # its hooks exist only then (pytest-rerunfailures does the same)
        from pytest_meshperf.session.xdist_hooks import XdistHooks  # it imports xdist: only when xdist is there
        config.pluginmanager.register(XdistHooks(), "meshperf-xdist")
    try:
        state = config.stash[STATE_KEY] = MeshState(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    if state.settings.given:   # meshperf was asked for: check its settings now, not after the other tests
        state.activate().configured()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = state_of(parent.config)
    if state is not None and state.active:
        return state.session.collect_file(file_path, parent)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "mesh_pair" in metafunc.fixturenames:
        state_of(metafunc.config).activate().parametrize(metafunc)


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: a burst group is the pairs that will run
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = state_of(config)
    if state is None or not any(is_mesh_item(item) for item in items):
        return
    found = state.activate().collected(items)
    if state.is_worker:
        state.tell_controller(found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(MeasurementError):
        # A measurement that could not be made is an error, not a failed threshold.
        report.meshperf_error = True
        report.longrepr = f"MeasurementError: {call.excinfo.value}"
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    if getattr(report, "meshperf_error", False) and report.when == "call":
        return "error", "E", "ERROR"
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> Generator[None, None, None]:
    swapped = getattr(report, "meshperf_error", False) and report.when == "call"
    if swapped:
        report.when = "setup"
    try:
        return (yield)
    finally:
        if swapped:
            report.when = "call"


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    result = yield   # an interrupted loop (Ctrl-C, pytest.exit) raises here: no diagnosis then
    state = state_of(session.config)
    if state is not None and state.active and not (session.shouldfail or session.shouldstop):
        state.session.diagnose(session)
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    state = state_of(session.config)
    if state is not None and state.active:
        state.session.finish(exitstatus, interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
        if state.session.write_error is not None and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED   # results that could not be written are no pass


def pytest_unconfigure(config: pytest.Config) -> None:
    state = state_of(config)
    if state is not None:
        state.close()
        if state.active:
            state.session.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int | pytest.ExitCode,
                            config: pytest.Config) -> None:
    state = state_of(config)
    if state is not None and state.active:
        state.session.summarize(terminalreporter)

