"""rulefiles.py and config.load_rules: rules folders written to tmp_path, read from disk.

Covers the folder layout of rules/README.md (allow/ and deny/ lists, UT1 category
folders, host-regex files), e2guardian includes, undecodable bytes, ignored files, and
what load_rules adds: policy.yaml (valid or failing start-up with its line) and the
block-page template.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from fwdproxy.config import load_rules
from fwdproxy.errors import ConfigError
from fwdproxy.policy.index import Match, RuleSet
from fwdproxy.policy.rulefiles import MAX_INCLUDE_DEPTH, category_of, list_kind, load_rule_files

ip = ipaddress.ip_address


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def found(matches: list[Match]) -> list[tuple[str, str, str]]:
    return sorted((m.action, m.category, m.source) for m in matches)


def url_matches(rules: RuleSet, host: str, path: str) -> list[tuple[str, str, str]]:
    return found(rules.match_url(host, 80, path, f"http://{host}{path}"))


# -- names → kinds and categories -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "category", "kind"),
    [
        ("ads.txt", "ads", "list"),
        ("Ads.TXT", "Ads", "list"),
        ("hosts", "hosts", "list"),
        ("social.list", "social", "list"),
        ("stevenblack.hosts", "stevenblack", "list"),
        ("malware.regex", "malware", "hostregex"),
        ("malware.regex.txt", "malware", "hostregex"),
        ("regex.list", "regex", "hostregex"),
        ("REGEX.LIST", "REGEX", "hostregex"),
        ("gambling.conf", "gambling", "list"),
    ],
)
def test_category_and_kind_of_a_file_name(name: str, category: str, kind: str) -> None:
    assert (category_of(name), list_kind(name)) == (category, kind)


# -- a whole folder ---------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write(tmp_path / "rules", {
        "README.md": "# My rules\nthis-is-prose.example\n",
        "allow/work.txt": "# exceptions\nwork.ads.example\n",
        "allow/readme.txt": "prose.example\n",
        "deny/ads.txt": "ads.example\n||tracker.example^\n@@||ok.ads.example^\n",
        "deny/social.txt": "social.example\n",
        "deny/README": "social.example\n",
        "deny/.hidden.txt": "hidden.example\n",
        "deny/adult/domains": "adult.example\n203.0.113.0/24\n",
        "deny/adult/urls": "www.mixed.example/adult/\n",
        "deny/adult/expressions": "(porn|xxx)\\.\n^casino\\.example/play\n",
        "deny/adult/usage": "black\nThis list is published by UT1: it lists adult sites.\n",
        "deny/malware.regex": "(^|\\.)evil\\.example$\n",
        "deny/regex.list": "^ad[0-9]+\\.\n",
    })


def test_folder_categories_actions_and_sources(folder: Path) -> None:
    rules = load_rule_files(folder)
    assert rules.errors == []
    assert rules.categories("deny") == {"ads", "social", "adult", "malware", "regex"}
    assert rules.categories("allow") == {"work", "ads"}  # ads: its @@ entry
    assert found(rules.match_domain("x.ads.example")) == [("deny", "ads", "deny/ads.txt:1")]
    assert found(rules.match_domain("work.ads.example")) == [
        ("allow", "work", "allow/work.txt:2"), ("deny", "ads", "deny/ads.txt:1")]
    assert found(rules.match_domain("ok.ads.example")) == [
        ("allow", "ads", "deny/ads.txt:3"), ("deny", "ads", "deny/ads.txt:1")]
    assert found(rules.match_domain("tracker.example")) == [("deny", "ads", "deny/ads.txt:2")]
    assert found(rules.match_domain("social.example")) == [("deny", "social", "deny/social.txt:1")]


def test_ut1_category_folder(folder: Path) -> None:
    rules = load_rule_files(folder)
    assert found(rules.match_domain("www.adult.example")) == [("deny", "adult", "deny/adult/domains:1")]
    # As squidGuard 1.6 reads these files (checked against the binary): an address in a
    # domains file matches a URL naming it, never a name resolving to it ...
    assert found(rules.match_literal(ip("203.0.113.9"))) == [("deny", "adult", "deny/adult/domains:2")]
    assert rules.match_address(ip("203.0.113.9")) == [] and not rules.has_address_rules
    # ... urls entries ignore case and a leading www., web., ftp. or www2. of the request ...
    adult_urls = [("deny", "adult", "deny/adult/urls:1")]
    for host, path in [("mixed.example", "/adult/x"), ("www.mixed.example", "/adult/x"),
                       ("MIXED.example".lower(), "/ADULT/x"), ("web.mixed.example", "/Adult/"),
                       ("ftp2.mixed.example", "/adult/")]:
        assert url_matches(rules, host, path) == adult_urls, (host, path)
    assert url_matches(rules, "mixed.example", "/kids/") == []
    assert url_matches(rules, "cdn.mixed.example", "/adult/") == []
    # ... and expressions are searched in host/path, without the scheme, ignoring case.
    assert url_matches(rules, "xxx.example", "/") == [("deny", "adult", "deny/adult/expressions:1")]
    assert url_matches(rules, "XXX.example".lower(), "/PORN.html") == [
        ("deny", "adult", "deny/adult/expressions:1")]
    assert url_matches(rules, "casino.example", "/Play/x") == [
        ("deny", "adult", "deny/adult/expressions:2")]
    assert url_matches(rules, "www.casino.example", "/play") == []
    # the prose "usage" file is not a list: its words are no entries, and no errors
    assert rules.match_domain("black") == []


def test_host_regex_files(folder: Path) -> None:
    rules = load_rule_files(folder)
    assert found(rules.match_host_regex("www.evil.example")) == [
        ("deny", "malware", "deny/malware.regex:1")]
    assert found(rules.match_host_regex("ad7.cdn.example")) == [("deny", "regex", "deny/regex.list:1")]
    assert rules.match_host_regex("notevil.example") == []
    # host regexes are not URL regexes, nor domain entries
    assert rules.match_url("evil.example", 80, "/", "http://evil.example/") == []


def test_readme_and_hidden_files_are_ignored(folder: Path) -> None:
    rules = load_rule_files(folder)
    for host in ("this-is-prose.example", "prose.example", "hidden.example"):
        assert rules.match_domain(host) == []
    assert [f.path for f in rules.files if "readme" in f.path.lower() or "hidden" in f.path] == []


def test_counts(folder: Path) -> None:
    counts = load_rule_files(folder).counts
    assert counts[("deny", "ads")] == 2
    assert counts[("allow", "ads")] == 1
    assert counts[("deny", "adult")] == 5
    assert counts[("allow", "work")] == 1


def test_missing_allow_or_deny_folder_is_fine(tmp_path: Path) -> None:
    write(tmp_path, {"deny/ads.txt": "ads.example\n"})
    assert load_rule_files(tmp_path).categories("deny") == {"ads"}
    assert load_rule_files(tmp_path / "nothing-here").files == []


# -- bad bytes, line ends -----------------------------------------------------------------


def test_latin1_bytes_spoil_one_line_only(tmp_path: Path) -> None:
    write(tmp_path, {"deny/fr.txt": b"# list\ngood.example\ncaf\xe9.example\nother.example\n"})
    rules = load_rule_files(tmp_path)
    assert len(rules.errors) == 1
    assert rules.errors[0].startswith("deny/fr.txt:3: ")
    assert found(rules.match_domain("good.example")) == [("deny", "fr", "deny/fr.txt:2")]
    assert found(rules.match_domain("other.example")) == [("deny", "fr", "deny/fr.txt:4")]


def test_crlf_and_bom_file(tmp_path: Path) -> None:
    write(tmp_path, {"deny/win.txt": b"\xef\xbb\xbfone.example\r\n\r\n0.0.0.0 two.example\r\n"})
    rules = load_rule_files(tmp_path)
    assert rules.errors == []
    assert found(rules.match_domain("one.example")) == [("deny", "win", "deny/win.txt:1")]
    assert found(rules.match_domain("two.example")) == [("deny", "win", "deny/win.txt:3")]


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {
        "deny/ads.txt": "ok.example\nhttps://x.example/p\n",
        "deny/adult/domains": "a.example\nb.example/path\n",
        "deny/evil.regex": "[[:space:]]\n",
    })
    errors = load_rule_files(tmp_path).errors
    assert sorted(e.split(": ", 1)[0] for e in errors) == [
        "deny/ads.txt:2", "deny/adult/domains:2", "deny/evil.regex:1"]


# -- e2guardian .Include ------------------------------------------------------------------


def test_include_relative_path_under_the_including_category(tmp_path: Path) -> None:
    write(tmp_path, {
        "deny/phishing.txt": "one.example\n.Include<../shared/phish-more>\nthree.example\n",
        "shared/phish-more": "# included\ntwo.example\n",
    })
    rules = load_rule_files(tmp_path)
    assert rules.errors == []
    assert found(rules.match_domain("one.example")) == [("deny", "phishing", "deny/phishing.txt:1")]
    assert found(rules.match_domain("two.example")) == [("deny", "phishing", "shared/phish-more:2")]
    assert found(rules.match_domain("three.example")) == [("deny", "phishing", "deny/phishing.txt:3")]


def test_include_absolute_path(tmp_path: Path) -> None:
    elsewhere = write(tmp_path / "elsewhere", {"list": "far.example\n"})
    write(tmp_path / "rules", {"deny/e2g.txt": f".Include<{elsewhere / 'list'}>\n"})
    rules = load_rule_files(tmp_path / "rules")
    assert rules.errors == []
    [match] = rules.match_domain("far.example")
    assert (match.category, match.source) == ("e2g", f"{elsewhere / 'list'}:1")


def test_include_of_a_regex_file_reads_host_regexes(tmp_path: Path) -> None:
    write(tmp_path, {"deny/e2g.txt": ".Include<more.regex>\n", "deny/more.regex": "^bad\\.\n"})
    rules = load_rule_files(tmp_path)
    sources = {m.source for m in rules.match_host_regex("bad.example")}
    assert sources == {"deny/more.regex:1"}  # loaded twice (included, and as its own file)


def test_missing_include_is_reported_and_the_rest_loads(tmp_path: Path) -> None:
    write(tmp_path, {"deny/e2g.txt": "a.example\n.Include<nope.txt>\nb.example\n"})
    rules = load_rule_files(tmp_path)
    assert len(rules.errors) == 1
    assert rules.errors[0].startswith("deny/e2g.txt:2: ")
    assert "nope.txt" in rules.errors[0]
    assert rules.match_domain("b.example") != []


def test_include_loop_is_stopped_by_the_depth_limit(tmp_path: Path) -> None:
    write(tmp_path, {
        "deny/a.txt": "a.example\n.Include<b.inc>\n",
        "deny/b.inc": "b.example\n.Include<a.txt>\n",
    })
    rules = load_rule_files(tmp_path)  # returns: the loop ends
    assert len(rules.errors) == 2      # the loop via a.txt, and b.inc loaded on its own
    assert all(f"deeper than {MAX_INCLUDE_DEPTH}" in e for e in rules.errors)
    assert {e.split(": ", 1)[0] for e in rules.errors} <= {"deny/a.txt:2", "deny/b.inc:2"}
    assert rules.match_domain("b.example") != []


def test_self_include(tmp_path: Path) -> None:
    write(tmp_path, {"deny/self.txt": "s.example\n.Include<self.txt>\n"})
    rules = load_rule_files(tmp_path)
    assert [e.split(": ", 1)[0] for e in rules.errors] == ["deny/self.txt:2"]
    # one entry per load: the first file and MAX_INCLUDE_DEPTH nested loads
    assert rules.counts[("deny", "self")] == MAX_INCLUDE_DEPTH + 1


# -- config.load_rules: policy.yaml and the block page ---------------------------------

POLICY = """\
timezone: UTC
groups:
  staff: [10.0.1.0/24]
policies:
  - name: staff
    clients: [staff]
    deny: [ads]
    default: allow
"""


def test_load_rules_with_a_valid_policy(folder: Path) -> None:
    write(folder, {"policy.yaml": POLICY})
    loaded = load_rules(folder)
    assert loaded.root == folder
    assert loaded.rules is not None and loaded.policies is not None
    assert loaded.errors == ()
    assert loaded.block_template is None
    assert "deny ads: 2" in loaded.summary


def test_load_rules_without_policy(folder: Path) -> None:
    loaded = load_rules(folder)
    assert loaded.policies is None
    assert loaded.rules is not None


def test_load_rules_none() -> None:
    loaded = load_rules(None)
    assert (loaded.rules, loaded.policies, loaded.block_template) == (None, None, None)
    assert loaded.summary == "no rules folder"


def test_load_rules_reports_list_errors(tmp_path: Path) -> None:
    write(tmp_path, {"deny/ads.txt": "ok.example\n*bad.example\n"})
    loaded = load_rules(tmp_path)
    assert len(loaded.errors) == 1 and loaded.errors[0].startswith("deny/ads.txt:2: ")
    assert "1 problems" in loaded.summary


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (POLICY.replace("deny: [ads]", "deny: [nosuchcategory]"), 7),
        (POLICY.replace("clients: [staff]", "clients: [stuff]"), 6),
        (POLICY.replace("default: allow", "default: maybe"), 8),
        (POLICY + "  - name: staff\n    default: deny\n", 9),
    ],
)
def test_load_rules_invalid_policy_names_policy_yaml_line(folder: Path, text: str, line: int) -> None:
    write(folder, {"policy.yaml": text})
    with pytest.raises(ConfigError) as raised:
        load_rules(folder)
    assert f"policy.yaml:{line}:" in str(raised.value)


def test_load_rules_reads_the_block_template(folder: Path) -> None:
    template = "<html><body>Blocked: $url ($category, $source). Ask $contact.</body></html>\n"
    write(folder, {"blockpage.html": template})
    assert load_rules(folder).block_template == template


def test_load_rules_undecodable_template_fails(folder: Path) -> None:
    write(folder, {"blockpage.html": b"<html>\xff\xfe</html>"})
    with pytest.raises(ConfigError, match=r"blockpage\.html"):
        load_rules(folder)
