"""pytest hooks, and nothing else: each hook hands its work to the module that owns it.

Every hook is a no-op until a mesh test is collected (session/lifecycle.py): a repository's
other tests run as if meshperf were not installed.
"""

import pytest

from pytest_meshperf.errors import MeasurementError, UsageError
from pytest_meshperf.session import options
from pytest_meshperf.session.fixtures import measure, mesh_pair  # noqa: F401  (fixtures pytest must see)
from pytest_meshperf.session.lifecycle import STATE_KEY, MeshState, state_of
from pytest_meshperf.session.mesh_items import is_mesh_item


def pytest_addoption(parser):
    options.register(parser)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # After the repository's conftests declared their options, before pytest builds its parser from all of them.
    try:
        return (yield)
    finally:
        options.yield_taken_flags(parser)


def pytest_addhooks(pluginmanager):
    from pytest_meshperf import hookspecs
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "meshperf(profile=None, thresholds=None, **params): parameters and thresholds of a mesh "
                   "measurement (tool, duration, parallel, reverse, bidir, udp, bitrate, omit, test, args, ...)")
    if config.option.help or config.option.version:
        return
    if config.pluginmanager.hasplugin("xdist"):   # its hooks exist only then (pytest-rerunfailures does the same)
        from pytest_meshperf.session.xdist_hooks import XdistHooks
        config.pluginmanager.register(XdistHooks(), "meshperf-xdist")
    try:
        state = config.stash[STATE_KEY] = MeshState(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    if state.settings.given:   # meshperf was asked for: check its settings now, not after the other tests
        state.activate().configured()


def pytest_collect_file(file_path, parent):
    state = state_of(parent.config)
    if state is not None and state.active:
        return state.session.collect_file(file_path, parent)
    return None


def pytest_generate_tests(metafunc):
    if "mesh_pair" in metafunc.fixturenames:
        state_of(metafunc.config).activate().parametrize(metafunc)


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: a burst group is the pairs that will run
def pytest_collection_modifyitems(session, config, items):
    state = state_of(config)
    if state is None or not any(is_mesh_item(item) for item in items):
        return
    found = state.activate().collected(items)
    if state.is_worker:
        state.tell_controller(found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(MeasurementError):
        # A measurement that could not be made is an error, not a failed threshold.
        report.meshperf_error = True
        report.longrepr = "MeasurementError: %s" % call.excinfo.value
    return report


def pytest_report_teststatus(report, config):
    if getattr(report, "meshperf_error", False) and report.when == "call":
        return "error", "E", "ERROR"
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_logreport(report):
    # JUnit XML writes <error> only for reports outside the call phase: present the
    # measurement error as the error it is, then restore the report.
    swapped = getattr(report, "meshperf_error", False) and report.when == "call"
    if swapped:
        report.when = "setup"
    try:
        return (yield)
    finally:
        if swapped:
            report.when = "call"


def pytest_sessionfinish(session, exitstatus):
    state = state_of(session.config)
    if state is not None and state.active:
        state.session.finish(exitstatus, interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)


def pytest_unconfigure(config):
    state = state_of(config)
    if state is not None:
        state.close()
        if state.active:
            state.session.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = state_of(config)
    if state is not None and state.active:
        state.session.summarize(terminalreporter)

