"""policy/lint.py: LintBuilder.findings — duplicates and entries shadowed by broader ones.

Lists are fed through the real parser into a LintBuilder, file by file; each row names
the exact warnings, which name the entry's file:line and the one it repeats or is under.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fwdproxy.policy.index import Action
from fwdproxy.policy.lint import LintBuilder, LintFindings
from fwdproxy.policy.rulefiles import load_rule_files
from fwdproxy.policy.rules import parse_lines


def lint(files: dict[str, list[str]]) -> LintFindings:
    builder = LintBuilder()
    for path, lines in files.items():
        action: Action = "allow" if path.startswith("allow/") else "deny"
        builder.begin_file(path, path.split("/")[1].removesuffix(".txt"), action)
        parse_lines(lines, builder)
    return builder.findings()


@pytest.mark.parametrize(
    ("files", "duplicates", "shadowed"),
    [
        pytest.param({"deny/ads.txt": ["a.example", "b.example", "c.example"]}, [], [], id="clean"),
        pytest.param({"deny/ads.txt": ["a.example", "b.example", "a.example"]},
                     ["deny/ads.txt:3: a.example is already listed at deny/ads.txt:1"], [],
                     id="duplicate"),
        pytest.param({"deny/ads.txt": ["a.example", "||A.example^", "0.0.0.0 a.example. b.example"]},
                     ["deny/ads.txt:2: a.example is already listed at deny/ads.txt:1",
                      "deny/ads.txt:3: a.example is already listed at deny/ads.txt:1"], [],
                     id="duplicate-other-spellings"),
        pytest.param({"deny/ads.txt": ["a.example"], "deny/more.txt": ["a.example"]},
                     ["deny/more.txt:1: a.example is already listed at deny/ads.txt:1"], [],
                     id="duplicate-across-files"),
        pytest.param({"deny/ads.txt": ["a.example"], "allow/work.txt": ["a.example"]}, [], [],
                     id="allow-and-deny-are-no-duplicates"),
        pytest.param({"deny/ads.txt": ["a.example", "@@||a.example^"]}, [], [],
                     id="exception-is-no-duplicate"),
        pytest.param({"deny/ads.txt": ["a.example", "*.a.example"]}, [],
                     ["deny/ads.txt:2: *.a.example is already covered by a.example (deny/ads.txt:1)"],
                     id="subdomains-under-their-domain"),
        pytest.param({"deny/ads.txt": ["example.com", "*.sub.example.com"]}, [],
                     ["deny/ads.txt:2: *.sub.example.com is already covered by example.com "
                      "(deny/ads.txt:1)"], id="wildcard-sub-under-domain"),
        pytest.param({"deny/ads.txt": ["x.y.example.com", "example.com"]}, [],
                     ["deny/ads.txt:1: x.y.example.com is already covered by example.com "
                      "(deny/ads.txt:2)"], id="broader-entry-later"),
        pytest.param({"deny/ads.txt": ["*.example.com", "a.example.com"]}, [],
                     [], id="subdomains-only-shadows-nothing"),
        pytest.param({"deny/ads.txt": ["example.com", "notexample.com", "example.com.au"]}, [], [],
                     id="no-false-parents"),
        pytest.param({"deny/ads.txt": ["example.com"], "allow/work.txt": ["a.example.com"]}, [], [],
                     id="allow-under-deny-is-an-exception"),
        pytest.param({"allow/work.txt": ["example.com", "a.example.com"]}, [],
                     ["allow/work.txt:2: a.example.com is already covered by example.com "
                      "(allow/work.txt:1)"], id="allow-under-allow"),
        pytest.param({"deny/ads.txt": ["203.0.113.0/24", "203.0.113.0/24", "x.example/p", "x.example/p"]},
                     [], [], id="only-domain-entries-are-linted"),
    ],
)
def test_findings(files: dict[str, list[str]], duplicates: list[str], shadowed: list[str]) -> None:
    findings = lint(files)
    assert findings.duplicates == duplicates
    assert findings.shadowed == shadowed


def test_duplicate_subdomains_only_entry_is_named_as_written() -> None:
    findings = lint({"deny/ads.txt": ["*.x.example", "*.x.example"]})
    assert findings.duplicates == ["deny/ads.txt:2: *.x.example is already listed at deny/ads.txt:1"]


def test_hosts_file_entries_are_linted() -> None:
    findings = lint({"deny/hosts.txt": ["0.0.0.0 a.example", "0.0.0.0 a.example", "0.0.0.0 x.a.example"]})
    assert findings.duplicates == ["deny/hosts.txt:2: a.example is already listed at deny/hosts.txt:1"]
    assert findings.shadowed == [
        "deny/hosts.txt:3: x.a.example is already covered by a.example (deny/hosts.txt:1)"]


def test_lint_builder_still_builds_the_rule_set(tmp_path: Path) -> None:
    (tmp_path / "deny").mkdir()
    (tmp_path / "deny" / "ads.txt").write_text("a.example\na.example\nsub.a.example\n*bad\n")
    builder = LintBuilder()
    rules = load_rule_files(tmp_path, builder)
    assert [m.source for m in rules.match_domain("sub.a.example")] != []
    assert len(rules.errors) == 1 and rules.errors[0].startswith("deny/ads.txt:4: ")
    findings = builder.findings()
    assert findings.duplicates == ["deny/ads.txt:2: a.example is already listed at deny/ads.txt:1"]
    assert findings.shadowed == [
        "deny/ads.txt:3: sub.a.example is already covered by a.example (deny/ads.txt:1)"]
