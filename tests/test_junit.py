"""`--junit FILE` on the judging commands and `bitcheck report --format junit`: JUnit XML that parses back, one
test case per probe or property plus the verdict, FAIL as <failure>, SKIP as <skipped> with its reason."""
import json
import xml.etree.ElementTree as ET

from typer.testing import CliRunner

from bitcheck.commands.cli import app
from synthetic.curves import spec_for, write_run

runner = CliRunner()


def _suite(path):
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert int(suite.get("tests")) == len(cases)
    return suite, cases


def test_curve_report_as_junit(tmp_path):
    run = write_run(spec_for("micro_batch", seed=0), tmp_path / "r")  # a schedule bug: a FAIL and SKIPs
    result = runner.invoke(app, ["curve", str(run), "--out", str(tmp_path / "out"), "--json",
                                 "--junit", str(tmp_path / "ci" / "curve.xml")])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    suite, cases = _suite(tmp_path / "ci" / "curve.xml")
    assert suite.get("name") == "bitcheck curve"
    assert set(cases) == {p["name"] for p in report["probes"]} | {"verdict"}
    for p in report["probes"]:
        case = cases[p["name"]]
        assert case.get("classname") == f"bitcheck.curve.{p['branch']}"
        if p["status"] == "FAIL":
            assert case.find("failure").get("message") == p["message"]
        if p["status"] == "SKIP":
            assert case.find("skipped").get("message") == p["message"]
    assert int(suite.get("failures")) == sum(p["status"] == "FAIL" for p in report["probes"]) + 1  # + the verdict
    assert "INFRASTRUCTURE BUG" in cases["verdict"].find("failure").get("message")
    again = runner.invoke(app, ["report", report["run_dir"], "--format", "junit"])  # the saved report, re-rendered
    assert again.exit_code == 1 and ET.fromstring(again.stdout).find("testsuite").get("tests") == suite.get("tests")


def test_conform_properties_as_junit(tmp_path):
    for layer, code in (("tests.conform_layers:GoodBitLinear", 0), ("tests.conform_layers:InvertedScale", 1)):
        xml = tmp_path / f"{code}.xml"
        result = runner.invoke(app, ["conform", layer, "--examples", "10", "--junit", str(xml)])
        assert result.exit_code == code, result.output
        suite, cases = _suite(xml)
        assert "ternary_weights" in cases and "verdict" not in cases
        failed = {n for n, c in cases.items() if c.find("failure") is not None}
        assert (failed == set()) if code == 0 else ("scale_convention" in failed), failed
