"""`fwdproxy import e2guardian /etc/e2guardian`: filter groups, their site, URL and
regexp lists, time limits and block-page redirect turned into categories and policies.

e2guardian 5.3's meaning (its source and Debian's configuration), and what it becomes:

=============================================  ==========================================
e2guardian                                     fwdproxy
=============================================  ==========================================
``filtergroups = N``, ``e2guardianfN.conf``    a policy (or one per time window) per group
``authplugin`` ip: ``ipgroups`` (addresses     groups of CIDRs, policies in e2guardian's
first, then subnets, then ranges)              order of lookup
``authplugin`` proxy-basic...:                 groups of ``user:NAME`` (the user fwdproxy
``filtergroupslist`` ``user=filterN``          authenticates)
no plugin matched: ``defaultfiltergroup``      the last policy, for every client
``iplist`` bannedclient / exceptionclient      first policies: deny all / allow all
lists named banned, localbanned                deny categories of the group's policy
lists named exception, localexception,         allow categories (allow beats deny, as
pre-auth authexception                         exception beats banned)
``#listcategory: "Name"``                      the category name (block page, log)
``#time:`` in a list (and its parent's)        the category only in policies for then
storyboard ``checkblanketblock`` (``**``,      default deny, or a category blocking every
``*ip``), ``sslcheckblanketblock`` (``**s``,   plain-HTTP URL, or every address host
``*ips``); v4 lists' ``**`` lines
storyboard unfiltered / block-all group,       default allow with no category / default
v4 ``groupmode`` 2 / 0                         deny with none
``accessdeniedaddress`` (reportinglevel 1-2)   ``redirect:`` with DENIEDURL, IP, USER,
                                               FILTERGROUP, CATEGORIES, REASON filled in
=============================================  ==========================================

How list entries are matched is in `e2guardian_lists`. Everything else (phrase and
content lists, grey lists, MIME and extension lists, header and user-agent regexps,
search terms, URL rewriting, SSL MITM, bypass, virus scanning) is noted once per
configuration line that uses it, when its list holds anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fwdproxy.importers.e2guardian_conf import (
    Assigned,
    Conf,
    Function,
    Option,
    StoryMeaning,
    ip_groups,
    list_spec,
    note_options,
    parse_conf,
    read_story,
    redirect,
    story_meaning,
    user_groups,
)
from fwdproxy.importers.e2guardian_lists import Converted, Kind, ListFile, ListReader, convert, networks
from fwdproxy.importers.model import (
    CategoryDraft,
    Imported,
    PolicyDraft,
    SourceError,
    Window,
    safe_name,
)
from fwdproxy.importers.sgtime import WEEK, Minutes, windows_of
from fwdproxy.policy.policies import Action

MAIN = "e2guardian.conf"
_LIST_KINDS: dict[str, Kind] = {"sitelist": "site", "ipsitelist": "ipsite", "urllist": "url",
                                "regexpboollist": "regexp"}
_CARRIED: dict[str, Action] = {"banned": "deny", "localbanned": "deny", "exception": "allow",
                               "localexception": "allow"}
# e2guardian 4's one-list-per-option names (5.3 still reads a few of them).
_V4_LISTS = {f"{name}{kind}list": (f"{kind}list" if kind != "regexpurl" else "regexpboollist", name)
             for name in ("banned", "exception", "grey") for kind in ("site", "url", "regexpurl")}
_V4_LISTS |= {"bannedsiteiplist": ("ipsitelist", "banned"),
              "exceptionsiteiplist": ("ipsitelist", "exception")}
_WHAT = {"grey": "grey list (lifts URL blocks for plain HTTP, keeping content checks)",
         "greyssl": "SSL grey list (decides SSL MITM)",
         "bannedssl": "SSL-only banned list (unused by e2guardian 5.3's storyboard)",
         "exceptionfile": "file download exceptions", "refererexception": "referer exceptions",
         "embededreferer": "embedded referer list", "bannedclient": "client host names",
         "nocheckcert": "certificate check exceptions (SSL MITM)",
         "bannedbypass": "bypass exceptions", "exceptionvirus": "virus scan exceptions",
         "authexception": "client address exceptions (unused by the pre-auth storyboard)",
         "searchlist": "search terms list", "searchterms": "search term extraction",
         "regexpreplacelist": "URL or header rewriting",
         "fileextlist": "file extension list", "mimelist": "MIME type list",
         "regexpboollist": "header or user-agent regular expressions",
         "bannedphraselist": "banned phrase list (content filtering)",
         "weightedphraselist": "weighted phrase list (content filtering)",
         "exceptionphraselist": "exception phrase list (content filtering)",
         "contentregexplist": "content regular expressions (page rewriting)"}
_USER_PLUGINS = frozenset({"proxy-basic", "proxy-digest", "proxy-ntlm", "ident", "proxy-header",
                           "bearerbasic", "pf-basic"})
# Lists given by a path alone, not by "name=...,path=...".
_PATH_LISTS = frozenset({"bannedphraselist", "weightedphraselist", "exceptionphraselist",
                         "contentregexplist"})
_SPEC_LISTS = frozenset({*_LIST_KINDS, "iplist", "searchlist", "regexpreplacelist",
                         "fileextlist", "mimelist"})


@dataclass(slots=True)
class _Unit:
    """A category as a group's policies use it."""

    display: str
    action: Action
    time: Minutes | None  # None: always


@dataclass(slots=True)
class _Group:
    number: int
    name: str
    origin: str
    units: list[_Unit] = field(default_factory=list)
    default: Action = "allow"
    redirect: str | None = None


def _meet(first: Minutes | None, second: Minutes | None) -> Minutes | None:
    if first is None:
        return second
    return first if second is None else first & second


class _Importer:
    def __init__(self, folder: Path, imported: Imported, main: Conf) -> None:
        self.folder = folder
        self.imported = imported
        self.main = main
        self.lists = ListReader(imported, self.resolve)
        self.ip_names = main.value("searchsitelistforip", "on") != "off"
        self.made: dict[tuple[Path, Kind, Action, Minutes | None], list[_Unit]] = {}
        self.displays: set[str] = set()
        self.policy_names: set[str] = set()

    def note(self, where: str, message: str) -> None:
        self.imported.note(where, message)

    def resolve(self, text: str) -> Path:
        """A path of the configuration; one under /etc/e2guardian that is missing is
        looked for in the folder imported (a copy of it)."""
        path = Path(text)
        if not path.is_absolute():
            return self.folder / path
        if not path.exists() and "e2guardian" in path.parts:
            tail = path.parts[path.parts.index("e2guardian") + 1:]
            if tail and (self.folder.joinpath(*tail)).exists():
                return self.folder.joinpath(*tail)
        return path

    # -- categories ------------------------------------------------------------------------

    def units_of(self, top: ListFile, kind: Kind, action: Action, time: Minutes | None,
                 blankets: list[tuple[str, str]]) -> list[_Unit]:
        """The categories one list makes: its own with the included lists that have no
        category or time of their own, then those that have."""
        time = _meet(time, top.time)
        key = (top.path, kind, action, time)
        if key in self.made:
            return self.made[key]
        self.made[key] = []
        merged, nested, members = Converted(), list[_Unit](), [top]
        for member in members:
            for child in member.includes:
                if child.category is None and child.time is None:
                    members.append(child)
                else:
                    nested += self.units_of(child, kind, action, time, blankets)
            converted = convert(member.entries, kind, ip_names=self.ip_names)
            for reason, (count, line) in converted.skipped.items():
                self.note(f"{member.path}:{line}", f"{count} entries {reason}: not carried over")
            merged.lines += converted.lines
            merged.host_regexes += converted.host_regexes
            blankets += [(token, f"{member.path}:{line}") for token, line in converted.blankets]
        if time is not None and not time:
            self.note(f"{top.path}:{top.time_line}", "time limit that is never now (e2guardian's "
                      "windows do not cross midnight): the list is never used")
        unit = self.category(top, kind, action, time, merged)
        self.made[key] = ([unit] if unit is not None else []) + nested
        return self.made[key]

    def category(self, top: ListFile, kind: str, action: Action, time: Minutes | None,
                 converted: Converted) -> _Unit | None:
        if not converted.lines and not converted.host_regexes:
            return None
        display = top.category or top.path.name
        display = self.unique(display, self.displays)
        name = self.unique(safe_name(display), set(self.imported.categories))
        header = [f"# e2guardian {kind} list {top.path} ({action})"]
        if display != name:
            header.append(f'#listcategory: "{display}"')
        draft = CategoryDraft(name, str(top.path))
        if converted.lines:
            draft.lines[f"{name}.txt"] = header + converted.lines
        if converted.host_regexes:
            draft.lines[f"{name}.regex"] = header + converted.host_regexes
        self.imported.categories[name] = draft
        return _Unit(display, action, time)

    def fixed(self, name: str, lines: list[str], host: list[str], origin: str) -> _Unit:
        """A category of the import's own (blanket blocks)."""
        if name not in self.imported.categories:
            draft = CategoryDraft(name, origin)
            if lines:
                draft.lines[f"{name}.txt"] = [f"# {origin}", *lines]
            if host:
                draft.lines[f"{name}.regex"] = [f"# {origin}", *host]
            self.imported.categories[name] = draft
            self.displays.add(name)
        return _Unit(name, "deny", None)

    @staticmethod
    def unique(name: str, taken: set[str]) -> str:
        candidate, number = name, 1
        while candidate in taken:
            number += 1
            candidate = f"{name} ({number})"
        taken.add(candidate)
        return candidate

    # -- lists of a configuration file --------------------------------------------------------

    def lists_of(self, conf: Conf, carried: dict[str, Action], *,
                 v5: bool) -> tuple[list[_Unit], dict[str, str]]:
        """The categories a configuration's list options make, and its blanket entries."""
        units: list[_Unit] = []
        blankets: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        banned_first: str | None = None
        for option in conf.options:
            if option.key in _SPEC_LISTS:
                list_type, (name, path) = option.key, list_spec(option.value)
            elif option.key in _V4_LISTS:
                (list_type, name), path = _V4_LISTS[option.key], option.value
            elif option.key in _PATH_LISTS:
                self.unused(option, option.key, option.value)
                continue
            else:
                continue
            if (list_type, name) in seen:
                self.note(option.where, f"{list_type} {name} defined twice: e2guardian ignores "
                                        "this one, so does the import")
                continue
            seen.add((list_type, name))
            action, kind = carried.get(name), _LIST_KINDS.get(list_type)
            if action is None or kind is None or name in ("bannedclient", "exceptionclient"):
                if list_type != "iplist" or name not in ("bannedclient", "exceptionclient"):
                    self.unused(option, name if name.removeprefix("local") in _WHAT else list_type,
                                path)
                continue
            listed = self.lists.read(self.resolve(path), regex=kind == "regexp", where=option.where)
            made = self.units_of(listed, kind, action, None, blankets) if listed else []
            units += made
            if made and name == "localbanned":
                banned_first = banned_first or option.where
        if banned_first and any(u.action == "allow" for u in units):
            self.note(banned_first, "localbanned is checked before the exception lists in "
                                    "e2guardian; here allow beats deny, so a site in both is allowed")
        return units, self.blanket_entries(blankets, v5=v5)

    def unused(self, option: Option, what: str, path: str) -> None:
        """Note a list that is not carried over, if it holds anything (its includes are
        followed quietly: what they lack does not matter here)."""
        listed = ListReader(Imported(""), self.resolve).read(self.resolve(path), regex=True,
                                                              where=option.where)
        if listed is not None and listed.size():
            description = _WHAT.get(what.removeprefix("local"), f"{what} list")
            self.note(option.where, f"{option.key} {path}: {description}: not carried over")

    def blanket_entries(self, found: list[tuple[str, str]], *, v5: bool) -> dict[str, str]:
        tokens: dict[str, str] = {}
        for token, where in found:
            if v5:
                self.note(where, f"blanket entry {token!r}: e2guardian 5 ignores it in a list "
                                 "(blanket blocks are storyboard functions): not carried over")
            else:
                tokens.setdefault(token, where)
        return tokens

    # -- filter groups ------------------------------------------------------------------------

    def group(self, number: int) -> _Group | None:
        path = self.folder / f"e2guardianf{number}.conf"
        try:
            conf = parse_conf(path)
        except OSError as exc:
            where = (self.main.get("filtergroups") or Option("", "", str(self.main.path))).where
            self.note(where, f"filter group {number}: cannot read {path}: {exc.strerror or exc}: "
                             "not carried over")
            return None
        group = _Group(number, conf.value("groupname") or f"filter{number}", str(path))
        story = conf.get("storyboard")
        meaning = StoryMeaning()
        if story is not None:
            functions: dict[str, Function] = {}
            read_story(self.resolve(story.value), story.where, functions, self.imported, self.resolve)
            meaning = story_meaning(functions, self.imported)
        mode = self.group_mode(conf, meaning.mode, v5=story is not None)
        carried = {k: v for k, v in _CARRIED.items() if meaning.local or not k.startswith("local")}
        units, listed = self.lists_of(conf, carried, v5=story is not None)
        note_options(conf, self.imported)
        group.redirect = redirect(conf, self.main, group.name, self.imported)
        if mode == "unfiltered":
            return group
        group.units = [u for u in units if u.action == "allow"]
        if mode == "blocked":
            group.default = "deny"
            return group
        group.units += [u for u in units if u.action == "deny"]
        self.blankets(group, meaning.blankets | listed)
        return group

    def group_mode(self, conf: Conf, mode: str, *, v5: bool) -> str:
        option = conf.get("groupmode")
        if option is None:
            return mode
        if v5:
            self.note(option.where, "groupmode: e2guardian 5 no longer reads it: not carried over")
            return mode
        return {"0": "blocked", "2": "unfiltered"}.get(option.value, mode)

    def blankets(self, group: _Group, tokens: dict[str, str]) -> None:
        """Blanket blocks: ``**`` (plain HTTP), ``**s`` (CONNECT), ``*ip``, ``*ips``."""
        origin = f"blanket block of {group.name}"
        if "**" in tokens and "**s" in tokens:
            group.default = "deny"
        elif "**" in tokens:
            group.units.append(self.fixed("blanket-block", ["/^http:///"], [], origin))
        elif "**s" in tokens:
            group.default = "deny"
            self.note(tokens["**s"], "blanket block of tunnels (**s): here plain HTTP is blocked "
                                     "too (a policy cannot block only CONNECT)")
        if "*ip" in tokens and "*ips" not in tokens:
            group.units.append(self.fixed("blanket-ip-http", ["/^http://[^a-z/]+//"], [], origin))
        elif "*ips" in tokens:
            # e2guardian's "site is an IP": a host without letters.
            group.units.append(self.fixed("blanket-ip", [], ["^[^a-z]+$"], origin))
            if "*ip" not in tokens:
                self.note(tokens["*ips"], "blanket block of tunnels to addresses (*ips): here "
                                          "plain HTTP to addresses is blocked too")

    # -- who is in which group ------------------------------------------------------------------

    def stages(self, count: int) -> list[tuple[int, str, list[str], str]]:
        """(group number, group name, members, origin) in e2guardian's order of lookup."""
        stages: list[tuple[int, str, list[str], str]] = []
        plugins = [o for o in self.main.options if o.key == "authplugin"]
        for index, option in enumerate(plugins):
            try:
                plugin = parse_conf(self.resolve(option.value))
            except OSError as exc:
                self.note(option.where, f"cannot read {option.value}: {exc.strerror or exc}")
                continue
            name = plugin.value("plugname").lower()
            listed = plugin.get("ipgroups") if name == "ip" else self.main.get("filtergroupslist")
            if name == "ip" and listed is not None:
                stages += self.runs(ip_groups(self.resolve(listed.value), listed.where, count,
                                              self.imported), "addresses")
            elif name in _USER_PLUGINS and listed is not None:
                stages += self.runs(user_groups(self.resolve(listed.value), listed.where, count,
                                                self.imported), "users")
                if name != "proxy-basic":
                    self.note(option.where, f"auth plugin {name}: the user is the one fwdproxy's "
                                            "own authentication (auth:) names")
                if index < len(plugins) - 1 and self.main.value("authrequiresuserandgroup") != "on":
                    self.note(option.where, "a user not in filtergroupslist gets the default group "
                                            "in e2guardian; here the plugins after this one decide")
            elif name not in _USER_PLUGINS and name != "ip":
                self.note(option.where, f"auth plugin {name or option.value}: not carried over")
        return stages

    def runs(self, found: list[Assigned], what: str) -> list[tuple[int, str, list[str], str]]:
        """Consecutive entries of one group as one group of policy.yaml."""
        stages: list[tuple[int, str, list[str], str]] = []
        for number, members, origin in found:
            if stages and stages[-1][0] == number:
                stages[-1][2].extend(m for m in members if m not in stages[-1][2])
                continue
            name = self.unique(f"filter{number}-{what}", set(self.imported.groups))
            stages.append((number, name, list(members), origin))
            self.imported.groups[name] = (stages[-1][2], origin)
        return stages

    def preauth(self) -> list[PolicyDraft]:
        """bannedclient and exceptionclient address lists: checked before any group."""
        policies: list[PolicyDraft] = []
        for option in self.main.options:
            name, path = list_spec(option.value)
            if option.key != "iplist" or name not in ("bannedclient", "exceptionclient"):
                continue
            listed = self.lists.read(self.resolve(path), regex=False, where=option.where)
            members = [str(n) for _, entry in (listed.entries if listed else [])
                       for n in networks(entry) or []]
            if not members or listed is None:
                continue
            self.imported.groups[name] = (members, option.where)
            when = windows_of(listed.time) if listed.time is not None else []
            policies.append(PolicyDraft(self.unique(name, self.policy_names), option.where,
                                        [name], when=when,
                                        default="deny" if name == "bannedclient" else "allow"))
        return policies

    # -- policies --------------------------------------------------------------------------------

    def policies(self, group: _Group, clients: list[str], label: str,
                 origin: str) -> list[PolicyDraft]:
        """The group's policy, and one before it per set of time-limited lists at work."""
        timed = [u for u in group.units if u.time is not None]
        by_active: dict[frozenset[str], set[int]] = {}
        if timed:
            for minute in range(len(WEEK)):
                active = frozenset(u.display for u in timed if minute in (u.time or ()))
                by_active.setdefault(active, set()).add(minute)
        drafts = []
        for active, minutes in sorted(by_active.items(), key=lambda item: min(item[1])):
            if active:
                drafts.append(self.draft(group, clients, f"{label} (while {', '.join(sorted(active))})",
                                         origin, active, windows_of(frozenset(minutes))))
        drafts.append(self.draft(group, clients, label, origin, frozenset(), []))
        return drafts

    def draft(self, group: _Group, clients: list[str], label: str, origin: str,
              active: frozenset[str], when: list[Window]) -> PolicyDraft:
        units = [u for u in group.units if u.time is None or u.display in active]
        return PolicyDraft(self.unique(group.name + label, self.policy_names), origin, clients,
                           when=when, deny=[u.display for u in units if u.action == "deny"],
                           allow=[u.display for u in units if u.action == "allow"],
                           default=group.default, redirect=group.redirect)

    def run(self) -> None:
        option = self.main.get("filtergroups")
        count = int(option.value) if option is not None and option.value.isdigit() else 1
        if count < 1:
            count = 1
        pre_allow, _ = self.lists_of(self.main, {"authexception": "allow"}, v5=True)
        note_options(self.main, self.imported)
        groups = {n: g for n in range(1, count + 1) if (g := self.group(n)) is not None}
        for group in groups.values():
            group.units += [u for u in pre_allow if u.action == "allow"]
        policies = self.preauth()
        for number, name, _, origin in self.stages(count):
            if number in groups:
                policies += self.policies(groups[number], [name], f" {name.split('-')[-1]}", origin)
        default = self.main.value("defaultfiltergroup", "1")
        fallback = groups.get(int(default) if default.isdigit() else 1) or groups.get(1)
        if fallback is not None:
            policies += self.policies(fallback, [], "", fallback.origin)
        if self.imported.categories or any(p.default == "deny" for p in policies):
            self.imported.policies = policies
        else:
            self.imported.groups.clear()


def read(folder: Path) -> Imported:
    """Read the e2guardian configuration folder `folder` (``/etc/e2guardian``).

    Returns:
        the categories, groups and policies that decide as e2guardian does, with notes on
        what is not carried over.

    Raises:
        SourceError: `folder` is missing or holds no readable e2guardian.conf.
    """
    if not folder.is_dir():
        raise SourceError(f"{folder}: no such folder")
    main_path = folder / MAIN
    if not main_path.is_file():
        raise SourceError(f"{folder}: no {MAIN} here (give e2guardian's configuration folder)")
    try:
        main = parse_conf(main_path)
    except OSError as exc:
        raise SourceError(f"cannot read {main_path}: {exc.strerror or exc}") from None
    imported = Imported(source=str(folder))
    _Importer(folder, imported, main).run()
    return imported
