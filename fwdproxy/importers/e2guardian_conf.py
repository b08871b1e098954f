"""e2guardian's configuration files, as e2guardian 5.3 reads them: ``key = value`` files
(e2guardian.conf, e2guardianfN.conf, auth plugin files), storyboards (``function(name)``
blocks, ``.Include<...>``, a later definition replacing an earlier one) and the files that
put clients in filter groups (``ipgroups``, ``filtergroupslist``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from fwdproxy.importers.e2guardian_lists import networks
from fwdproxy.importers.model import Imported

# The storyboard's blanket block lines (examplef1.story): "if(true,,502) return setblock".
_BLANKET = re.compile(r"if\((true|siteisip)[^)]*\)\s*return\s+setblock")
# A group that is never filtered, or always blocked: checkrequest's first line.
_WHOLE = re.compile(r"if\(true[^)]*\)\s*return\s+(setexception|setblock)")
# Storyboard functions that decide on URL lists: overriding one changes the meaning.
_DECIDING = frozenset({"checkrequest", "thttps-checkrequest", "localcheckrequest",
                       "localsslrequestcheck", "localbannedcheck", "localexceptioncheck",
                       "exceptioncheck", "sslexceptioncheck", "greycheck", "bannedcheck",
                       "sslrequestcheck", "pre-authcheck"})
# Storyboards include a few library files; more is a loop.
_MAX_DEPTH = 8

Resolve = Callable[[str], Path]
Assigned = tuple[int, list[str], str]  # (filter group, members, file:line)


@dataclass(slots=True)
class Option:
    """One ``key = value`` line (key in lower case, value unquoted)."""

    key: str
    value: str
    where: str


@dataclass(slots=True)
class Conf:
    """A ``key = value`` file's options, in order."""

    path: Path
    options: list[Option]

    def get(self, key: str) -> Option | None:
        """The first option named `key` (e2guardian reads the first)."""
        return next((o for o in self.options if o.key == key), None)

    def value(self, key: str, default: str = "") -> str:
        option = self.get(key)
        return option.value if option is not None else default


def parse_conf(path: Path) -> Conf:
    """``key = value`` lines; values may be quoted; ``#`` starts a comment. Raises OSError."""
    options = []
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        key, sep, rest = line.partition("=")
        if not line or line.startswith("#") or not sep:
            continue
        rest = rest.strip()
        if rest[:1] in ("'", '"'):
            value = rest[1:].partition(rest[0])[0]
        else:
            value = rest.partition("#")[0].strip().rstrip(";").strip()
        options.append(Option(key.strip().lower(), value, f"{path}:{number}"))
    return Conf(path, options)


def list_spec(value: str) -> tuple[str, str]:
    """``name=banned,messageno=500,path=/etc/...`` → (name, path)."""
    fields = dict(part.partition("=")[::2] for part in value.split(","))
    return fields.get("name", "").strip(), fields.get("path", "").strip()


# -- storyboards ---------------------------------------------------------------------------


@dataclass(slots=True)
class Function:
    """A storyboard function: where it is defined, its lines, and whether it is the
    library's own (common.story) rather than an override."""

    where: str
    body: list[str]
    library: bool


@dataclass(slots=True)
class StoryMeaning:
    """What a group's storyboard overrides mean for its URL decisions.

    Attributes:
        mode: ``filtered``, ``unfiltered`` (every request an exception) or ``blocked``.
        blankets: blanket blocks (``**``, ``*ip``, ``**s``, ``*ips``) → where set.
        local: whether the local lists are used (site.story can switch them off).
    """

    mode: str = "filtered"
    blankets: dict[str, str] = field(default_factory=dict)
    local: bool = True


def read_story(path: Path, where: str, functions: dict[str, Function], imported: Imported,
               resolve: Resolve, depth: int = 0) -> None:
    """Add the functions of the storyboard at `path` (and what it includes) to `functions`."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        imported.note(where, f"cannot read storyboard {path}: {exc.strerror or exc}")
        return
    current: Function | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.partition(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(".Include<") and depth < _MAX_DEPTH:
            read_story(resolve(line[len(".Include<"):].partition(">")[0]), f"{path}:{number}",
                       functions, imported, resolve, depth + 1)
            current = None
        elif line.startswith("function(") and line.endswith(")"):
            current = Function(f"{path}:{number}", [], path.name == "common.story")
            functions[line[len("function("):-1].strip()] = current  # replaces an earlier one
        elif current is not None:
            current.body.append(line)


def story_meaning(functions: dict[str, Function], imported: Imported) -> StoryMeaning:
    """Read the overrides e2guardian's example storyboards document; note the others."""
    meaning = StoryMeaning()
    check = functions.get("checkrequest")
    if check is not None and not check.library and check.body and _WHOLE.fullmatch(check.body[0]):
        meaning.mode = "unfiltered" if "setexception" in check.body[0] else "blocked"
    local = functions.get("localcheckrequest")
    meaning.local = local is None or local.library or bool(local.body)
    for name, function in functions.items():
        if function.library or (name == "checkrequest" and meaning.mode != "filtered"):
            continue
        if name in ("checkblanketblock", "sslcheckblanketblock"):
            ssl = "s" if name.startswith("ssl") else ""
            for line in function.body:
                found = _BLANKET.fullmatch(line)
                if found is None:
                    imported.note(function.where, f"{name}: {line!r}: not carried over")
                else:
                    token = ("**" if found.group(1) == "true" else "*ip") + ssl
                    meaning.blankets[token] = function.where
        elif name.startswith("local") and not function.body and not meaning.local:
            continue  # site.story's "if you do not use local files"
        elif name in _DECIDING and not (meaning.mode != "filtered" and name in (
                "thttps-checkrequest", "sslexceptioncheck")):
            imported.note(function.where, f"storyboard function {name} is changed: not carried "
                                          "over (the import follows e2guardian's own storyboard)")
    return meaning


# -- options ------------------------------------------------------------------------------


def note_options(conf: Conf, imported: Imported) -> None:
    """Notes for the options that change filtering and are not carried over."""
    checks = {"sslmitm": ("on", "SSL MITM (decrypting HTTPS)"),
              "deepurlanalysis": ("on", "deep URL analysis (URLs inside URLs)"),
              "usexforwardedfor": ("on", "client address from X-Forwarded-For"),
              "reportinglevel": ("-1", "stealth mode (log, never block): here requests are "
                                       "blocked")}
    for key, (value, what) in checks.items():
        option = conf.get(key)
        if option is not None and option.value == value:
            imported.note(option.where, f"{key} = {value}: {what}: not carried over")
    for key in ("bypass", "infectionbypass"):
        option = conf.get(key)
        if option is not None and option.value not in ("", "0"):
            imported.note(option.where, f"{key} = {option.value}: temporary bypass: not carried "
                                        "over")
    for option in conf.options:
        if option.key == "contentscanner":
            imported.note(option.where, f"contentscanner {option.value}: content scanning: "
                                        "not carried over")


def redirect(conf: Conf, main: Conf, name: str, imported: Imported) -> str | None:
    """``accessdeniedaddress`` with e2guardian's query (reportinglevel 1 and 2 only)."""
    level = conf.value("reportinglevel", main.value("reportinglevel", "3"))
    option = conf.get("accessdeniedaddress") or main.get("accessdeniedaddress")
    if option is None or level not in ("1", "2") or not option.value:
        return None
    if not option.value.startswith(("http://", "https://")):
        imported.note(option.where, "accessdeniedaddress is no http(s) URL: not carried over")
        return None
    plain = conf.value("nonstandarddelimiter", "on") == "off"
    sep, equals = ("&", "=") if plain else ("::", "==")
    fields = {"DENIEDURL": "$url", "IP": "$client", "USER": "$user",
              "FILTERGROUP": quote(name, safe=""), "CATEGORIES": "$category",
              "REASON": "$rule"}
    imported.note(option.where, "accessdeniedaddress carried over as redirect:; REASON holds "
                                "the deciding rule (file:line), not e2guardian's message")
    return (option.value.replace("$", "$$") + "?"
            + sep.join(f"{key}{equals}{value}" for key, value in fields.items()))


# -- who is in which group -------------------------------------------------------------------


def _lines(path: Path, where: str, imported: Imported) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        imported.note(where, f"cannot read {path}: {exc.strerror or exc}")
        return None


def parse_assignment(text: str) -> tuple[str, int] | None:
    """``KEY = filterN`` (ipgroups, filtergroupslist) → (KEY, N), or None."""
    key, sep, value = text.partition("=")
    number = value.partition("filter")[2].strip()
    if not sep or not key.strip() or not number.isdigit():
        return None
    return key.strip(), int(number)


def ip_groups(path: Path, where: str, count: int, imported: Imported) -> list[Assigned]:
    """The ip auth plugin's ``ipgroups``, in the order e2guardian looks them up: addresses,
    then subnets, then ranges, each in file order."""
    found: list[tuple[int, Assigned]] = []
    for number, raw in enumerate(_lines(path, where, imported) or [], 1):
        if raw.startswith("#") or len(raw) < 10:  # e2guardian skips lines this short
            continue
        assigned = parse_assignment(raw)
        nets = networks(assigned[0]) if assigned is not None else None
        if assigned is None or nets is None or not 0 < assigned[1] <= count:
            imported.note(f"{path}:{number}", "not 'ADDRESS|SUBNET|RANGE = filterN' with N a "
                                              "filter group: skipped, as e2guardian does")
            continue
        order = 2 if "-" in assigned[0] else 1 if "/" in assigned[0] else 0
        found.append((order, (assigned[1], [str(n) for n in nets], f"{path}:{number}")))
    found.sort(key=lambda item: item[0])
    return [assigned for _, assigned in found]


def user_groups(path: Path, where: str, count: int, imported: Imported) -> list[Assigned]:
    """``filtergroupslist``: ``user=filterN`` lines (user names compared in lower case)."""
    found: list[Assigned] = []
    for number, raw in enumerate(_lines(path, where, imported) or [], 1):
        line = raw.partition(" #")[0].strip().lower()
        if not line or line.startswith("#"):
            continue
        assigned = parse_assignment(line)
        if assigned is None or not 0 < assigned[1] <= count:
            imported.note(f"{path}:{number}", "not 'USER=filterN' with N a filter group: "
                                              "skipped, as e2guardian does")
            continue
        found.append((assigned[1], [f"user:{assigned[0]}"], f"{path}:{number}"))
    return found
