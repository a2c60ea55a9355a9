"""Shared by every test: ``tests/`` on sys.path (the helper modules), and the `needs`
mark and `TCPLIFE_REQUIRE_ALL` (see tests/needs.py): a test that needs what a fresh clone
lacks is skipped with a reason naming it, or, under ``TCPLIFE_REQUIRE_ALL=1``, fails."""

import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import needs  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*tools, root=False, corpus=False, modules=()): what the test "
        "needs beyond a fresh clone (tests/needs.py)")


@pytest.hookimpl(tryfirst=True)  # before skipif marks and an empty parameter set's skip
def pytest_runtest_setup(item: pytest.Item) -> None:
    needs.check_marks(item)


def _no_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under TCPLIFE_REQUIRE_ALL, a skip of any origin (a skipif mark, importorskip) is
    turned into a failure that keeps its reason."""
    if not (needs.require_all() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    report.longrepr = f"skipped ({reason}), and {needs.REQUIRE_ALL}=1 allows no skip"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and \
            report.longrepr[0].endswith("needs.py"):  # say which test, not where it skipped
        path, line, _ = item.location
        report.longrepr = (path, (line or 0) + 1, report.longrepr[2])
    _no_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    _no_skip(outcome.get_result())
