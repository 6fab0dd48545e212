"""`check`'s findings as a markdown PR comment, JSON, and JUnit XML (one testcase per check)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import orjson

from costwarden.bench.markdown import table
from costwarden.domain.gate import Finding, Verdict, overall

ICON = {Verdict.PASS: "✅ pass", Verdict.FAIL: "❌ fail", Verdict.SKIP: "➖ skipped"}


def markdown(findings: list[Finding], baseline: str, current: str) -> str:
    verdict = overall(findings)
    head = "### costwarden check: " + ("**regression**" if verdict is Verdict.FAIL else "no regression")
    rows = [[f.name, f.baseline, f.current, f.change, f.limit, ICON[f.verdict], f.detail] for f in findings]
    body = table(["check", "baseline", "current", "change", "limit", "verdict", "how"], rows)
    return f"{head}\n\nBaseline `{baseline}`, current `{current}`.\n\n{body}\n"


def as_json(findings: list[Finding], baseline: str, current: str) -> bytes:
    return orjson.dumps(
        {
            "verdict": overall(findings).value,
            "baseline": baseline,
            "current": current,
            "checks": [
                {
                    "name": f.name,
                    "baseline": f.baseline,
                    "current": f.current,
                    "change": f.change,
                    "limit": f.limit,
                    "verdict": f.verdict.value,
                    "detail": f.detail,
                }
                for f in findings
            ],
        },
        option=orjson.OPT_INDENT_2,
    )


def junit(findings: list[Finding]) -> bytes:
    failures = sum(f.verdict is Verdict.FAIL for f in findings)
    skipped = sum(f.verdict is Verdict.SKIP for f in findings)
    suite = ET.Element(
        "testsuite", name="costwarden-check", tests=str(len(findings)), failures=str(failures), skipped=str(skipped)
    )
    for f in findings:
        case = ET.SubElement(suite, "testcase", classname="costwarden.check", name=f.name)
        message = f"baseline {f.baseline}, current {f.current}, change {f.change}, limit {f.limit}"
        if f.verdict is Verdict.FAIL:
            ET.SubElement(case, "failure", message=message).text = f.detail
        elif f.verdict is Verdict.SKIP:
            ET.SubElement(case, "skipped", message=f.detail)
        else:
            ET.SubElement(case, "system-out").text = f"{message}. {f.detail}".strip()
    root = ET.Element("testsuites")
    root.append(suite)
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return text
