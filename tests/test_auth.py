"""auth.py: htpasswd parsing, Basic credentials, password checks, the cache and the throttle.

Hashes are made here with the bcrypt package at cost 4 (fast) and with hashlib, so the
tests need no fixture files; one test also reads a file written by Apache's own htpasswd
when it is installed. Skipped lines are compared by line number and a fragment of their
reason, so that wording can improve without breaking the tables.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from collections import OrderedDict
from pathlib import Path

import bcrypt
import pytest

from fwdproxy.auth import (
    CredentialCache,
    FailureThrottle,
    Htpasswd,
    HtpasswdError,
    challenge,
    parse_basic,
    parse_htpasswd,
    verify_password,
)
from fwdproxy.errors import ConfigError

PATH = "users.htpasswd"


def bcrypt_hash(password: str, prefix: str = "$2b$") -> str:
    """A real bcrypt hash at cost 4, with the version prefix htpasswd -B ($2y$) or others use."""
    made = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=4)).decode("ascii")
    return prefix + made[len("$2b$"):]


def sha_hash(password: str) -> str:
    """What `htpasswd -s` writes: {SHA} and base64 of the SHA-1 of the password."""
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode("utf-8")).digest()).decode()


def basic(user_password: bytes, scheme: bytes = b"Basic") -> bytes:
    return scheme + b" " + base64.b64encode(user_password)


ALICE_OLD = bcrypt_hash("old-pw")
ALICE = bcrypt_hash("alice-pw")
BOB = bcrypt_hash("bob-pw", "$2y$")
CAROL = sha_hash("carol-pw")
JUERGEN = bcrypt_hash("jürgen-pw", "$2a$")
APR1 = "$apr1$uYzz8xvl$asg.Vow4bZmD2FtF2A9l81"  # htpasswd -m, password "pw"
DES = "UXN919hFldJGA"  # htpasswd -d, password "pw"
SHA512 = "$6$saltsalt$" + "a" * 86

# -- parse_htpasswd --------------------------------------------------------------------

MIXED_LINES = [
    "# office proxy users",              # 1
    "",                                  # 2
    f"alice:{ALICE_OLD}",                # 3  replaced by line 13
    f"bob:{BOB}",                        # 4  $2y$ as htpasswd -B writes
    f"carol:{CAROL}",                    # 5
    f"dave:{APR1}",                      # 6
    f"erin:{DES}",                       # 7
    "frank:plain-secret",                # 8
    "   # an indented comment   ",       # 9
    f"jürgen:{JUERGEN}",                 # 10 UTF-8 user name, $2a$
    "no colon on this line",             # 11
    f":{ALICE}",                         # 12
    f"alice:{ALICE}",                    # 13
    "grace:",                            # 14
    "heidi:$2y$04$tooshort",             # 15
    "ivan:{SHA}bm90IHR3ZW50eSBieXRlcw==",  # 16 base64 of the wrong length
    f"judy:{SHA512}",                    # 17
    "",                                  # 18
]

MIXED_SKIPPED = [
    (3, "'alice' appears again on line 13"),
    (6, "'dave': Apache MD5 ($apr1$"),
    (7, "'erin': DES crypt()"),
    (8, "'frank': not a supported hash (plain-text passwords are never accepted)"),
    (11, "no ':'"),
    (12, "empty user name"),
    (14, "'grace': no password hash"),
    (15, "'heidi': malformed bcrypt"),
    (16, "'ivan': malformed {SHA}"),
    (17, "'judy': SHA-512 crypt() ($6$)"),
]


def assert_skipped(result: Htpasswd, expected: list[tuple[int, str]]) -> None:
    assert len(result.skipped) == len(expected), result.skipped
    for line, (number, fragment) in zip(result.skipped, expected, strict=True):
        assert line.startswith(f"{PATH}:{number}: "), line
        assert fragment in line, (fragment, line)


def test_parse_mixed_file_with_crlf() -> None:
    result = parse_htpasswd("\r\n".join(MIXED_LINES), path=PATH)
    assert dict(result.users) == {"alice": ALICE, "bob": BOB, "carol": CAROL, "jürgen": JUERGEN}
    assert_skipped(result, MIXED_SKIPPED)
    # every unsupported kind tells how to fix it
    for number in (6, 7, 8, 15, 16, 17):
        assert any(s.startswith(f"{PATH}:{number}: ") and "htpasswd -B" in s for s in result.skipped)
    # a plain-text password never reaches a message (they end up in logs)
    assert not any("plain-secret" in s for s in result.skipped)


@pytest.mark.parametrize(
    ("line", "users", "skipped"),
    [
        (f"alice:{ALICE}", {"alice": ALICE}, []),
        (f"  alice:{ALICE}  \t", {"alice": ALICE}, []),              # surrounding whitespace
        (f"\ufeffalice:{ALICE}", {"alice": ALICE}, []),               # BOM of a Windows editor
        (f"alice:{ALICE}:Alice Example", {"alice": ALICE}, []),       # extra field, as Apache
        (f"bob:{BOB}", {"bob": BOB}, []),
        (f"carol:{CAROL}", {"carol": CAROL}, []),
        (f"jürgen:{JUERGEN}", {"jürgen": JUERGEN}, []),
        (f"dave:{APR1}", {}, [(1, "Apache MD5")]),
        ("dave:$1$salt$abcdefghijklmnopqrstuv", {}, [(1, "MD5 crypt() ($1$)")]),
        ("dave:$5$salt$" + "a" * 43, {}, [(1, "SHA-256 crypt() ($5$)")]),
        ("dave:{SSHA}c2FsdGVkc2hhc2FsdGVkc2hh", {}, [(1, "salted SHA ({SSHA})")]),
        ("dave:" + "$2x$" + ALICE[4:], {}, [(1, "$2x$")]),
        (f"erin:{DES}", {}, [(1, "DES crypt() hash (or a plain-text password)")]),
        ("frank:hunter2", {}, [(1, "plain-text passwords are never accepted")]),
        ("frank:{SHA}", {}, [(1, "malformed {SHA}")]),
        ("frank:{SHA}!!!notbase64!!!!!!!!!!!!!!!", {}, [(1, "malformed {SHA}")]),
        ("heidi:" + ALICE[:-1], {}, [(1, "malformed bcrypt")]),
        ("heidi:$2b$99$" + ALICE[7:], {}, [(1, "malformed bcrypt")]),  # cost out of range
        ("grace:", {}, [(1, "'grace': no password hash")]),
        ("nocolon", {}, [(1, "no ':'")]),
        (f":{ALICE}", {}, [(1, "empty user name")]),
        (f"bad\x01user:{ALICE}", {}, [(1, "control characters")]),
    ],
)
def test_parse_one_line(line: str, users: dict[str, str], skipped: list[tuple[int, str]]) -> None:
    # a good user on line 2 keeps the file usable, so the line under test is only skipped
    keep = f"zed:{CAROL}"
    result = parse_htpasswd(f"{line}\n{keep}\n", path=PATH)
    assert dict(result.users) == {**users, "zed": CAROL}
    assert_skipped(result, skipped)


@pytest.mark.parametrize(
    ("lines", "users", "skipped"),
    [
        # both usable: the last wins, the earlier is reported
        ([f"alice:{ALICE_OLD}", f"alice:{ALICE}"], {"alice": ALICE}, [(1, "again on line 2")]),
        # the last is unusable: alice cannot log in, her old password stops working too
        ([f"alice:{ALICE}", f"alice:{APR1}", f"bob:{BOB}"], {"bob": BOB},
         [(1, "again on line 2"), (2, "Apache MD5")]),
        # an unusable line replaced by a good one
        ([f"alice:{APR1}", f"alice:{ALICE}"], {"alice": ALICE},
         [(1, "Apache MD5"), (1, "again on line 2")]),
        # three times: each earlier line is reported against the next
        ([f"alice:{CAROL}", f"alice:{ALICE_OLD}", f"alice:{ALICE}"], {"alice": ALICE},
         [(1, "again on line 2"), (2, "again on line 3")]),
    ],
)
def test_duplicate_users(lines: list[str], users: dict[str, str],
                         skipped: list[tuple[int, str]]) -> None:
    result = parse_htpasswd("\n".join(lines), path=PATH)
    assert dict(result.users) == users
    assert_skipped(result, skipped)


@pytest.mark.parametrize(
    ("text", "start", "fragment"),
    [
        ("", f"{PATH}:1: ", "no users"),
        ("# nobody yet\n\n", f"{PATH}:1: ", "no users"),
        (f"# header\ndave:{APR1}\nfrank:hunter2\n", f"{PATH}:2: ", "Apache MD5"),
        ("\n\nfrank:hunter2\n", f"{PATH}:3: ", "plain-text"),
        (f"alice:{ALICE}\nalice:{APR1}\n", f"{PATH}:1: ", "again on line 2"),
    ],
)
def test_no_usable_user_raises(text: str, start: str, fragment: str) -> None:
    with pytest.raises(HtpasswdError) as info:
        parse_htpasswd(text, path=PATH)
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert message.startswith(start), message
    assert fragment in message, message
    assert "hunter2" not in message


def test_htpasswd_is_read_only_and_its_repr_hides_the_hashes() -> None:
    result = parse_htpasswd(f"alice:{ALICE}\n", path=PATH)
    with pytest.raises(TypeError):
        result.users["mallory"] = ALICE  # type: ignore[index]
    assert ALICE not in repr(result)


# -- parse_basic -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (basic(b"alice:alice-pw"), ("alice", "alice-pw")),
        (basic(b"alice:alice-pw", b"basic"), ("alice", "alice-pw")),
        (basic(b"alice:alice-pw", b"BASIC"), ("alice", "alice-pw")),
        (b"  " + basic(b"alice:pw").replace(b" ", b" \t ") + b" \t", ("alice", "pw")),
        (basic(b"alice:pa:ss:word"), ("alice", "pa:ss:word")),          # ':' in the password
        (basic(b"alice:"), ("alice", "")),                               # empty password
        (basic("jürgen:pässword".encode()), ("jürgen", "pässword")),     # UTF-8
        (basic("jürgen:pässword".encode("latin-1")), ("jürgen", "pässword")),  # Latin-1
        (basic(b"alice:\xff\xfe"), ("alice", "\xff\xfe")),               # not UTF-8 → Latin-1
        (b"Basic", None),                                                # no credentials
        (b"", None),
        (b"Basic !!!not-base64!!!", None),
        (b"Basic YWxpY2U6cHc", None),                                    # padding missing
        (b"Basic YWxp Y2U6cHc=", None),                                  # space inside
        (b"Basic " + "é".encode() + b"YWxpY2U6cHc=", None),             # non-ASCII token
        (basic(b"alice-without-colon"), None),
        (basic(b":pw"), None),                                           # empty user
        (basic(b"ali\nce:pw"), None),                                    # would forge log lines
        (basic(b"alice\x85:pw"), None),                                  # C1 control
        (basic(b"alice:pw", b"Bearer"), None),
        (basic(b"alice:pw", b"Basicx"), None),
        (b"Digest username=\"alice\"", None),
    ],
)
def test_parse_basic(value: bytes, expected: tuple[str, str] | None) -> None:
    assert parse_basic(value) == expected


# -- verify_password -------------------------------------------------------------------

LONG = "x" * 80  # bcrypt uses only the first 72 bytes; htpasswd -B truncates the same way
LONG_HASH = bcrypt_hash(LONG[:72], "$2y$")


@pytest.mark.parametrize(
    ("stored", "password", "expected"),
    [
        (ALICE, "alice-pw", True),
        (ALICE, "alice-pW", False),
        (ALICE, "", False),
        (BOB, "bob-pw", True),                       # $2y$
        (BOB, "alice-pw", False),
        (JUERGEN, "jürgen-pw", True),                # $2a$, non-ASCII password
        (JUERGEN, "jurgen-pw", False),
        (CAROL, "carol-pw", True),                   # {SHA}
        (CAROL, "carol-pw ", False),
        (sha_hash("pässword"), "pässword", True),
        (LONG_HASH, LONG, True),                     # longer than 72 bytes: no exception
        (LONG_HASH, LONG[:72], True),
        (LONG_HASH, LONG[:71], False),
        # what parse_htpasswd refuses is refused here too, and garbage never raises
        (APR1, "pw", False),
        (DES, "pw", False),
        ("pw", "pw", False),                         # a plain-text "hash" never matches
        ("", "", False),
        ("$2b$04$tooshort", "pw", False),
        ("$2b$99$" + ALICE[7:], "alice-pw", False),
        ("$2y$" + "é" * 56, "pw", False),            # non-ASCII hash
        ("{SHA}", "", False),
        ("{SHA}!!!!", "pw", False),
        ("{SHA}" + base64.b64encode(b"short").decode(), "pw", False),
        (ALICE, "alice-pw\x00", False),
        (ALICE, "\ud800", False),                    # a lone surrogate cannot be encoded
    ],
)
def test_verify_password(stored: str, password: str, expected: bool) -> None:
    assert verify_password(stored, password) is expected


def test_parsed_file_and_header_work_together() -> None:
    users = parse_htpasswd("\r\n".join(MIXED_LINES), path=PATH).users
    for header, ok in [
        (basic("jürgen:jürgen-pw".encode()), True),
        (basic("jürgen:jürgen-pw".encode("latin-1")), True),  # a browser that ignores charset
        (basic(b"alice:alice-pw"), True),
        (basic(b"alice:old-pw"), False),                       # replaced by a later line
        (basic(b"carol:carol-pw"), True),
        (basic(b"dave:pw"), False),                            # $apr1$ line skipped
    ]:
        parsed = parse_basic(header)
        assert parsed is not None
        user, password = parsed
        assert (user in users and verify_password(users[user], password)) is ok, header


# -- CredentialCache -------------------------------------------------------------------

H1, H2, H3 = basic(b"alice:alice-pw"), basic(b"bob:bob-pw"), basic(b"carol:carol-pw")


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (operation, header, time) → what each get returns
        ([("put", H1, 0.0), ("get", H1, 0.0)], ["alice"]),
        ([("put", H1, 0.0), ("get", H1, 299.9)], ["alice"]),
        ([("put", H1, 0.0), ("get", H1, 300.0)], [None]),                    # expired
        ([("put", H1, 0.0), ("get", H1, 300.0), ("get", H1, 1.0)], [None, None]),  # removed
        ([("put", H1, 0.0), ("get", H2, 0.0)], [None]),
        ([("put", H1, 0.0), ("get", H1.lower(), 0.0)], [None]),             # exact bytes only
        # a get does not extend the life: one real check per ttl
        ([("put", H1, 0.0), ("get", H1, 200.0), ("get", H1, 301.0)], ["alice", None]),
        ([("put", H1, 0.0), ("put", H1, 200.0), ("get", H1, 400.0)], ["alice"]),  # put renews
        ([("put", H1, 0.0), ("clear", H1, 0.0), ("get", H1, 1.0)], [None]),
    ],
)
def test_credential_cache_expiry_and_clear(steps: list[tuple[str, bytes, float]],
                                           expected: list[str | None]) -> None:
    users = {H1: "alice", H2: "bob", H3: "carol"}
    cache = CredentialCache()
    got: list[str | None] = []
    for operation, header, now in steps:
        if operation == "put":
            cache.put(header, users[header], now)
        elif operation == "get":
            got.append(cache.get(header, now))
        else:
            cache.clear()
    assert got == expected


def test_credential_cache_evicts_the_least_recently_used() -> None:
    cache = CredentialCache(max_entries=2, ttl=300)
    cache.put(H1, "alice", 0)
    cache.put(H2, "bob", 1)
    assert cache.get(H1, 2) == "alice"  # H1 is now the most recently used
    cache.put(H3, "carol", 3)           # so H2 goes
    assert len(cache) == 2
    assert [cache.get(h, 4) for h in (H1, H2, H3)] == ["alice", None, "carol"]


def test_credential_cache_bound_holds_under_many_clients() -> None:
    cache = CredentialCache(max_entries=100)
    for i in range(1000):
        cache.put(basic(f"user{i}:pw".encode()), f"user{i}", float(i))
    assert len(cache) == 100
    assert cache.get(basic(b"user999:pw"), 1000) == "user999"
    assert cache.get(basic(b"user0:pw"), 1000) is None


def test_credential_cache_disabled_with_zero_entries() -> None:
    cache = CredentialCache(max_entries=0)
    cache.put(H1, "alice", 0)
    assert cache.get(H1, 0) is None


def reachable_strings(root: CredentialCache) -> set[bytes | str]:
    """Every str and bytes held by `root` through its slots and containers."""
    found: set[bytes | str] = set()
    todo: list[object] = [root]
    while todo:
        obj = todo.pop()
        if isinstance(obj, str | bytes):
            found.add(obj)
        elif isinstance(obj, dict | OrderedDict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, tuple | list):
            todo.extend(obj)
        elif obj is root:
            todo.extend(getattr(obj, name) for name in CredentialCache.__slots__)
    return found


def test_credential_cache_keeps_no_password() -> None:
    cache = CredentialCache()
    header = basic(b"alice:correct horse battery staple")
    cache.put(header, "alice", 0)
    held = reachable_strings(cache)
    assert "alice" in held  # the walk does see what the cache holds
    assert hashlib.sha256(header).digest() in held
    for value in held:
        text = value if isinstance(value, bytes) else value.encode()
        assert b"correct horse" not in text
        assert base64.b64encode(b"alice:correct horse battery staple") not in text


@pytest.mark.parametrize("kwargs", [{"max_entries": -1}, {"ttl": -1.0}])
def test_credential_cache_rejects_negative_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CredentialCache(**kwargs)  # type: ignore[arg-type]


# -- FailureThrottle -------------------------------------------------------------------

Step = tuple[str, float, bool | None]  # ("fail" | "ok" | "allowed", now, expected allowed)


def fails(*times: float) -> list[Step]:
    return [("fail", t, None) for t in times]


def allowed(now: float, expected: bool) -> list[Step]:
    return [("allowed", now, expected)]


SUCCESS: list[Step] = [("ok", 0.0, None)]


def script(*parts: list[Step]) -> list[Step]:
    return [step for part in parts for step in part]


@pytest.mark.parametrize(
    "steps",
    [
        # four failures are fine, the fifth within 60 s locks out for 30 s
        script(fails(0, 1, 2, 3), allowed(4, True)),
        script(fails(0, 1, 2, 3, 4), allowed(4, False), allowed(33.9, False), allowed(34, True)),
        # failures older than the window do not count
        script(fails(0, 1, 2, 3, 61), allowed(61, True)),
        script(fails(0, 16, 32, 48, 64, 80, 96), allowed(96, True)),
        # each further lockout doubles: 30, 60, 120, 240, 480, then capped at 900
        script(fails(0, 0, 0, 0, 0), allowed(30, True),
               fails(30, 30, 30, 30, 30), allowed(89.9, False), allowed(90, True),
               fails(90, 90, 90, 90, 90), allowed(209.9, False), allowed(210, True)),
        script(fails(*[0] * 5, *[30] * 5, *[90] * 5, *[210] * 5, *[450] * 5, *[930] * 5),
               allowed(1829.9, False), allowed(1830, True),  # 930 + 900, not 960
               fails(*[1830] * 5), allowed(2729.9, False), allowed(2730, True)),
        # a success resets the count and the doubling
        script(fails(0, 1, 2, 3), SUCCESS, fails(5, 6, 7, 8), allowed(9, True)),
        script(fails(*[0] * 5), allowed(30, True), SUCCESS,
               fails(*[31] * 5), allowed(60.9, False), allowed(61, True)),
        # failures reported during a lockout (checks already running) are not counted
        script(fails(0, 0, 0, 0, 0, 1, 2, 3, 4), allowed(30, True), fails(31), allowed(31, True)),
    ],
)
def test_failure_throttle(steps: list[Step]) -> None:
    throttle = FailureThrottle()
    for number, (operation, now, expected) in enumerate(steps):
        if operation == "fail":
            throttle.failed("10.0.0.7", now)
        elif operation == "ok":
            throttle.succeeded("10.0.0.7")
        else:
            assert throttle.allowed("10.0.0.7", now) is expected, (number, operation, now)
        assert throttle.allowed("10.0.0.8", now)  # other addresses are never affected


def test_failure_throttle_counts_a_repeated_credential_once() -> None:
    throttle = FailureThrottle()
    typo = basic(b"alice:alice-pq")
    for now in range(10):  # a browser retrying one typo on all its connections
        throttle.failed("10.0.0.7", now, typo)
    assert throttle.allowed("10.0.0.7", 10)
    for i in range(4):  # four more distinct guesses make five
        throttle.failed("10.0.0.7", 10, basic(f"alice:guess{i}".encode()))
    assert not throttle.allowed("10.0.0.7", 10)
    # after the window the same typo counts again
    throttle.succeeded("10.0.0.7")
    throttle.failed("10.0.0.7", 100, typo)
    for now in (161, 162, 163, 164):
        throttle.failed("10.0.0.7", now, typo)
    assert throttle.allowed("10.0.0.7", 164)  # 161-164 count once, 100 has left the window


def test_failure_throttle_bounds_tracked_clients() -> None:
    throttle = FailureThrottle(limit=2, max_clients=3)
    for i in range(4):
        throttle.failed(f"10.0.0.{i}", 0)
        throttle.failed(f"10.0.0.{i}", 0)
    assert len(throttle) == 3
    assert throttle.allowed("10.0.0.0", 1)  # the oldest was dropped
    assert not any(throttle.allowed(f"10.0.0.{i}", 1) for i in (1, 2, 3))
    for i in range(20_000):
        throttle.failed(f"client-{i}", 0)
    assert len(throttle) == 3


def test_failure_throttle_success_forgets_the_address() -> None:
    throttle = FailureThrottle()
    throttle.failed("10.0.0.7", 0)
    throttle.succeeded("10.0.0.7")
    throttle.succeeded("10.0.0.9")  # unknown: no error
    assert len(throttle) == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"max_clients": 0}, {"window": -1.0}, {"penalty": -1.0}, {"max_penalty": -1.0}],
)
def test_failure_throttle_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FailureThrottle(**kwargs)  # type: ignore[arg-type]


# -- challenge -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("realm", "value"),
    [
        ("Office proxy", b'Basic realm="Office proxy", charset="UTF-8"'),
        ("", b'Basic realm="", charset="UTF-8"'),
        ('say "hi"', b'Basic realm="say \\"hi\\"", charset="UTF-8"'),
        ("back\\slash", b'Basic realm="back\\\\slash", charset="UTF-8"'),
        ('\\"', b'Basic realm="\\\\\\"", charset="UTF-8"'),
        ("tab\there", b'Basic realm="tab\there", charset="UTF-8"'),
        ("Büro", 'Basic realm="Büro", charset="UTF-8"'.encode()),
    ],
)
def test_challenge(realm: str, value: bytes) -> None:
    assert challenge(realm) == [(b"proxy-authenticate", value)]
    # the web gateway asks as a site does (401)
    assert challenge(realm, b"www-authenticate") == [(b"www-authenticate", value)]


@pytest.mark.parametrize("realm", ["a\r\nSet-Cookie: x=1", "a\nb", "nul\x00", "del\x7f"])
def test_challenge_refuses_control_characters(realm: str) -> None:
    with pytest.raises(ValueError):
        challenge(realm)


# -- Apache's own htpasswd -------------------------------------------------------------


@pytest.mark.skipif(shutil.which("htpasswd") is None,
                    reason="htpasswd not installed (apt-get install apache2-utils)")
def test_file_written_by_apache_htpasswd(tmp_path: Path) -> None:
    path = tmp_path / "users"

    def run(*args: str) -> None:
        subprocess.run(["htpasswd", *args], check=True, capture_output=True, timeout=30)

    run("-c", "-B", "-b", "-C", "4", str(path), "alice", "alice:pw ü")
    run("-s", "-b", str(path), "bob", "bob-pw")
    run("-m", "-b", str(path), "dave", "dave-pw")      # Apache's default MD5: refused
    run("-B", "-b", "-C", "4", str(path), "long", "y" * 80)  # truncated at 72 by htpasswd
    result = parse_htpasswd(path.read_text(encoding="utf-8"), path=str(path))
    assert sorted(result.users) == ["alice", "bob", "long"]
    assert result.users["alice"].startswith("$2y$04$")
    assert result.users["bob"].startswith("{SHA}")
    assert len(result.skipped) == 1 and "'dave'" in result.skipped[0]
    assert result.skipped[0].startswith(f"{path}:3: ")
    for user, password, ok in [("alice", "alice:pw ü", True), ("alice", "alice:pw u", False),
                               ("bob", "bob-pw", True), ("bob", "bob-px", False),
                               ("long", "y" * 80, True), ("long", "y" * 71, False)]:
        assert verify_password(result.users[user], password) is ok, (user, password)
