"""`bitcheck selftest`: every planted bug is caught and attributed; healthy seeds raise no alarm."""
import json

import pytest
from typer.testing import CliRunner

from bitcheck.commands.cli import app


def _check(result):
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.stdout)
    assert report["ok"] and not report["missed"] and not report["false_alarms"]
    for row in report["bugs"]:
        assert row["right"] and row["fired"], row
    return report


@pytest.mark.training
def test_selftest_fast_subset():
    """One healthy seed and the quick subset of bugs (what the default suite runs)."""
    report = _check(CliRunner().invoke(app, ["selftest", "--fast", "--json"]))
    assert len(report["bugs"]) >= 8 and len(report["healthy"]) == 1


@pytest.mark.slow
def test_selftest_full_matrix():
    """Three healthy seeds and all nineteen bugs (seven from #14: root causes, not first symptoms)."""
    report = _check(CliRunner().invoke(app, ["selftest", "--seeds", "3", "--json"]))
    assert len(report["bugs"]) == 19 and len(report["healthy"]) == 3


def test_selftest_bad_bug_name():
    """An unknown bug name is a usage error."""
    result = CliRunner().invoke(app, ["selftest", "--bugs", "ste_missing,warp_drive"])
    assert result.exit_code == 2 and "warp_drive" in result.output
