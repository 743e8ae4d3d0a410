"""`--junit FILE`: a judging command's result as JUnit XML, the format CI servers show as test results.

    write_junit("results.xml", report.to_dict())      # any command's data: a Report's, conform's, export's, selftest's

One <testsuite> named `bitcheck <command>`; one <testcase> per probe (classname bitcheck.<command>.<branch>), per
conform property, per self-test case or the export parity check, plus one for the verdict where there is one:
FAIL is a <failure>, ERROR an <error>, SKIP a <skipped> with its reason, WARN passes with the message on
<system-out>. The schema is the one Jenkins/JUnit 4 and pytest's --junitxml write (testsuite, testcase,
failure, error, skipped, system-out), built with the standard library's ElementTree.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path


def _case(suite: ET.Element, classname: str, name: str, status: str, message: str, text: str = "") -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
    if status == "FAIL":
        ET.SubElement(case, "failure", message=message, type="FAIL").text = text or message
    elif status == "ERROR":
        ET.SubElement(case, "error", message=message, type="ERROR").text = text or message
    elif status == "SKIP":
        ET.SubElement(case, "skipped", message=message)
    elif message:
        ET.SubElement(case, "system-out").text = f"{status}: {message}"


def cases_of(data: dict) -> list[tuple[str, str, str, str, str]]:
    """(classname suffix, name, status, message, details) for each check in a command's data (module docstring)."""
    out = []
    for p in data.get("probes", []):
        details = "\n".join(x for x in (p.get("hint", ""), json.dumps(p.get("value"), default=str)) if x)
        out.append((p.get("branch") or "probe", p["name"], p["status"], p.get("message", ""), details))
    for r in data.get("properties", []):
        example = json.dumps(r["counterexample"]) if r.get("counterexample") else ""
        out.append(("conform", r["name"], r["status"], r["message"],
                    "\n".join(x for x in (f"minimal counterexample {example}" if example else "",
                                          f"fix: {r['hint']}" if r.get("hint") else "") if x)))
    if isinstance(data.get("parity"), dict):
        par = data["parity"]
        out.append(("export", "inference_parity", par["status"], par.get("message", ""), ""))
    for group in ("healthy", "bugs"):
        for row in data.get(group, []) if isinstance(data.get(group), list) else []:
            why = f"verdict {row.get('verdict')} ({row.get('part') or '-'}); fired: {', '.join(row.get('fired', [])) or '-'}"
            out.append((f"selftest.{group}", str(row.get("case")), "PASS" if row.get("right") else "FAIL", why, ""))
    v = data.get("verdict")
    if isinstance(v, dict):
        status = {"PASS": "PASS", "WARN": "PASS"}.get(v["status"], "FAIL")
        headline = f"{v['status']}: {v.get('category')}" + (f" ({v['part']})" if v.get("part") else "")
        out.append(("verdict", "verdict", status, headline,
                    v.get("diagnosis", "") + "\n" + "\n".join(f"- {s}" for s in v.get("next_steps", []))))
    return out


def junit_xml(data: dict) -> str:
    """The JUnit XML document of one command's data (module docstring)."""
    command = data.get("command", "bitcheck")
    cases = cases_of(data)
    count = {s: sum(c[2] == s for c in cases) for s in ("FAIL", "ERROR", "SKIP")}
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name=f"bitcheck {command}", tests=str(len(cases)),
                          failures=str(count["FAIL"]), errors=str(count["ERROR"]), skipped=str(count["SKIP"]), time="0")
    for where, name, status, message, text in cases:
        _case(suite, f"bitcheck.{command}.{where}", name, status, message, text)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: str, data: dict) -> None:
    """Write junit_xml(data) to `path` (its folder is created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(junit_xml(data), encoding="utf-8")
