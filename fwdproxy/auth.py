"""Proxy authentication: htpasswd users, Basic credentials, and the brakes around them.

Strategy: the I/O edge reads the htpasswd file (at startup and on every reload), hands the
text to `parse_htpasswd`, and for each request calls `parse_basic` on the
Proxy-Authorization value and `verify_password` on the stored hash; a 407 carries the
headers from `challenge`. Two small stateful helpers keep that cheap and safe:
`CredentialCache` remembers header values that already passed (bcrypt is slow on purpose),
and `FailureThrottle` refuses an address that keeps failing before any hash is computed.

Invariants:
- Only hashes that are slow or at least not plain are accepted: bcrypt (``htpasswd -B``)
  and ``{SHA}`` (``htpasswd -s``). Apache's ``$apr1$`` MD5, crypt() and plain-text lines
  are skipped with a reason telling to re-create them with ``htpasswd -B``; a password
  stored in clear is never compared.
- Skipped-line reasons name the file, line and user, never the stored field: on a
  plain-text line that field is the password, and reasons end up in logs.
- Nothing here keeps a password: the cache is keyed on a SHA-256 of the header value.
- Pure: no trio, sockets, file access or clock reads; callers pass ``now`` (monotonic
  seconds). The stateful helpers are not thread-safe: call them from the event-loop thread
  (only `verify_password` is meant for a worker thread).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import bcrypt

from fwdproxy.errors import ConfigError

# The three spellings of bcrypt that `htpasswd -B` and other tools write: $2y$ (Apache, PHP),
# $2b$ (OpenBSD, the bcrypt package) and $2a$ (older libraries). They verify identically.
# Cost 04-31 and 53 characters of salt and digest in bcrypt's own base64 alphabet.
_BCRYPT = re.compile(r"\$2[aby]\$(?:0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_SHA_PREFIX = "{SHA}"
_SHA1_SIZE = 20  # bytes of a SHA-1 digest
# bcrypt uses only the first 72 bytes of a password. `htpasswd -B` truncates silently, while
# the bcrypt package (5.0+) raises for longer input, so verification truncates the same way.
_BCRYPT_MAX_PASSWORD = 72
# A traditional DES crypt() hash: 2 salt + 11 digest characters (also what a short plain-text
# password can look like, so the reason names both).
_DES_CRYPT = re.compile(r"[./A-Za-z0-9]{13}")
# Known hash schemes we refuse, by prefix, with the name shown in the skipped reason. Only
# these fixed names are ever shown, never the field itself (it may be a password).
_UNSUPPORTED = (
    ("$apr1$", "Apache MD5 ($apr1$, htpasswd's default) hash"),
    ("$1$", "MD5 crypt() ($1$) hash"),
    ("$5$", "SHA-256 crypt() ($5$) hash"),
    ("$6$", "SHA-512 crypt() ($6$) hash"),
    ("$2x$", "bcrypt $2x$ (buggy-implementation marker) hash"),
    ("{SSHA}", "salted SHA ({SSHA}) hash"),
)
_RECREATE = "re-create it with htpasswd -B"
_LINE_WHITESPACE = " \t\r\n\f\v"


class HtpasswdError(ConfigError):
    """The htpasswd file has no usable user; the message starts with ``FILE:LINE: ``."""


@dataclass(frozen=True, slots=True)
class Htpasswd:
    """The users of one htpasswd file.

    Attributes:
        users: user name → stored hash (bcrypt or ``{SHA}``), read-only. Left out of the
            repr so the hashes do not end up in logs.
        skipped: one ``FILE:LINE: reason`` per line that was not used, in line order.
    """

    users: Mapping[str, str] = field(repr=False)
    skipped: tuple[str, ...] = ()


def _has_control(text: str) -> bool:
    # C0, DEL and C1: never part of a user name (RFC 7617 §2), and a newline in a name that
    # reaches the log would forge log lines.
    return any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in text)


def _hash_problem(stored: str) -> str | None:
    """Why `stored` cannot be used, or None when it is a supported, well-formed hash."""
    if not stored:
        return f"no password hash after the ':'; {_RECREATE}"
    if stored.startswith(("$2y$", "$2b$", "$2a$")):
        return None if _BCRYPT.fullmatch(stored) else f"malformed bcrypt hash; {_RECREATE}"
    if stored.startswith(_SHA_PREFIX):
        try:
            digest = base64.b64decode(stored[len(_SHA_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) == _SHA1_SIZE:
            return None
        return f"malformed {{SHA}} hash (not base64 of a 20-byte SHA-1); {_RECREATE}"
    for prefix, name in _UNSUPPORTED:
        if stored.startswith(prefix):
            return f"{name} is not supported; {_RECREATE}"
    if _DES_CRYPT.fullmatch(stored):
        return ("DES crypt() hash (or a plain-text password) is not supported; "
                f"{_RECREATE}")
    return f"not a supported hash (plain-text passwords are never accepted); {_RECREATE}"


def parse_htpasswd(text: str, *, path: str) -> Htpasswd:
    """Read the users of an htpasswd file.

    Lines are ``user:hash``; blank lines and lines starting with ``#`` are ignored, and
    surrounding whitespace and CRLF line ends are tolerated (as Apache does). A field after
    a second ``:`` is ignored, as Apache does. Unusable lines are reported in
    `Htpasswd.skipped` and the rest loads. When a user appears on several lines, the last
    line decides, even if it is unusable (then the user cannot log in): the admin meant it
    to replace the earlier one, so the earlier password must stop working.

    Args:
        text: the file's content.
        path: the file name, for messages.

    Returns:
        The usable users and the skipped lines.

    Raises:
        HtpasswdError: no line gives a usable user; names the path and the first problem.
    """
    if text.startswith("\ufeff"):  # a BOM left by Windows editors
        text = text[1:]
    problems: list[tuple[int, str]] = []
    entries: dict[str, tuple[int, str | None]] = {}  # user → (line, hash or None if unusable)
    # split("\n") rather than splitlines(): the latter also breaks at \x0b, \x1c, U+2028...,
    # which would shift line numbers away from what an editor shows.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(_LINE_WHITESPACE)
        if not line or line.startswith("#"):
            continue
        user, sep, rest = line.partition(":")
        if not sep:
            problems.append((number, "no ':' between user name and password hash"))
            continue
        if not user:
            problems.append((number, "empty user name"))
            continue
        if _has_control(user):
            problems.append((number, f"user {user!r}: the name contains control characters"))
            continue
        stored = rest.partition(":")[0]
        problem = _hash_problem(stored)
        if problem is not None:
            problems.append((number, f"user {user!r}: {problem}"))
        earlier = entries.get(user)
        if earlier is not None:
            problems.append((earlier[0], f"user {user!r} appears again on line {number}, "
                                         "which replaces this line"))
        entries[user] = (number, stored if problem is None else None)
    users = {user: stored for user, (_, stored) in entries.items() if stored is not None}
    problems.sort(key=lambda item: item[0])
    if not users:
        if problems:
            number, reason = problems[0]
            raise HtpasswdError(f"{path}:{number}: no usable user in this file "
                                f"({len(problems)} lines skipped); the first problem: {reason}")
        raise HtpasswdError(f"{path}:1: no users (the file is empty or holds only comments)")
    return Htpasswd(MappingProxyType(users),
                    tuple(f"{path}:{number}: {reason}" for number, reason in problems))


def parse_basic(header_value: bytes) -> tuple[str, str] | None:
    """Decode a ``Basic`` Proxy-Authorization value (RFC 7617).

    The scheme is case-insensitive and surrounding whitespace is tolerated. The bytes are
    read as UTF-8, else as Latin-1: browsers that ignore ``charset="UTF-8"`` send Latin-1,
    and both decode to the same text, which `verify_password` encodes as UTF-8 again.

    Args:
        header_value: the raw header value.

    Returns:
        (user, password), split at the first ``:`` (a password may contain ``:``), or None
        when the value is not well-formed Basic credentials: another scheme, bad base64,
        no ``:``, an empty user name, or control characters in the user name.
    """
    parts = header_value.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != b"basic":
        return None
    try:
        raw = base64.b64decode(parts[1].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # never fails: every byte is a character
    user, sep, password = text.partition(":")
    if not sep or not user or _has_control(user):
        return None
    return user, password


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches a stored htpasswd hash, in constant time.

    bcrypt is slow on purpose (about 10-250 ms depending on the cost): the edge calls this
    in a worker thread and caches successes (`CredentialCache`). ``{SHA}`` is unsalted
    SHA-1, fast; its digests are compared with `hmac.compare_digest`.

    Args:
        stored: the hash from the htpasswd file.
        password: the password the client sent.

    Returns:
        True on a match; False on a mismatch and for anything odd (an unsupported or
        malformed hash, a password that cannot be encoded). Never raises.
    """
    try:
        secret = password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: never from parse_basic
        return False
    if stored.startswith(("$2y$", "$2b$", "$2a$")):
        try:
            # checkpw is constant-time; truncating matches what htpasswd -B hashed.
            return bcrypt.checkpw(secret[:_BCRYPT_MAX_PASSWORD], stored.encode("ascii"))
        except ValueError:  # malformed hash or salt (UnicodeEncodeError is a ValueError)
            return False
    if stored.startswith(_SHA_PREFIX):
        try:
            expected = base64.b64decode(stored[len(_SHA_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            return False
        if len(expected) != _SHA1_SIZE:
            return False
        return hmac.compare_digest(hashlib.sha1(secret).digest(), expected)
    return False


class CredentialCache:
    """Header values that recently authenticated, so bcrypt runs once per `ttl` per client.

    Browsers send Proxy-Authorization on every request; without this each request would
    cost a bcrypt check. Keys are SHA-256 digests of the raw header value, so no password
    is kept. Entries expire `ttl` seconds after `put` (not after the last `get`, so a
    changed or removed user is re-checked at least that often), the least recently used
    entry goes when there are `max_entries`, and `clear` drops everything (call it when the
    htpasswd file is reloaded).

    Args:
        max_entries: how many header values to remember (0 disables the cache).
        ttl: seconds an entry stays valid.

    Raises:
        ValueError: a negative `max_entries` or `ttl`.
    """

    __slots__ = ("_entries", "max_entries", "ttl")

    def __init__(self, *, max_entries: int = 4096, ttl: float = 300.0) -> None:
        if max_entries < 0 or ttl < 0:
            raise ValueError("max_entries and ttl must not be negative")
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()  # key → (user, expiry)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, header_value: bytes, now: float) -> str | None:
        """The user this exact header value authenticated as, if still remembered.

        Args:
            header_value: the raw Proxy-Authorization value.
            now: monotonic seconds.

        Returns:
            The user, or None (never seen, expired or evicted).
        """
        key = hashlib.sha256(header_value).digest()
        entry = self._entries.get(key)
        if entry is None:
            return None
        user, expiry = entry
        if now >= expiry:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return user

    def put(self, header_value: bytes, user: str, now: float) -> None:
        """Remember that `header_value` authenticated as `user`.

        Args:
            header_value: the raw Proxy-Authorization value that passed.
            user: the user it authenticated as.
            now: monotonic seconds.
        """
        if self.max_entries == 0:
            return
        key = hashlib.sha256(header_value).digest()
        self._entries[key] = (user, now + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry (the htpasswd file changed)."""
        self._entries.clear()


@dataclass(slots=True)
class _ClientFailures:
    # (time, digest of the credential or None) of the failures in the current window
    failures: deque[tuple[float, bytes | None]] = field(default_factory=deque)
    locked_until: float = float("-inf")
    lockouts: int = 0  # lockouts since the last success: the penalty doubles with each


class FailureThrottle:
    """A per-address brake on failed logins, checked before any password is verified.

    After `limit` failures within `window` seconds an address is refused for `penalty`
    seconds; each further lockout doubles that, up to `max_penalty`; a success resets the
    address. Failures reported while the address is locked out are not counted (they come
    from checks that started before). When `failed` is given the credential, the same
    wrong credential counts once per window: a browser retries the one mistyped password
    on all its parallel connections, which is one mistake, and a guesser gains nothing by
    repeating a guess. At most `max_clients` addresses are tracked; the one whose last
    failure is oldest is dropped first.

    Args:
        limit: failures within `window` that trigger a lockout.
        window: seconds over which failures are counted.
        penalty: seconds of the first lockout.
        max_penalty: the longest lockout, in seconds.
        max_clients: how many addresses to track.

    Raises:
        ValueError: a limit or max_clients below 1, or a negative duration.
    """

    __slots__ = ("_clients", "limit", "max_clients", "max_penalty", "penalty", "window")

    def __init__(self, *, limit: int = 5, window: float = 60.0, penalty: float = 30.0,
                 max_penalty: float = 900.0, max_clients: int = 10_000) -> None:
        if limit < 1 or max_clients < 1:
            raise ValueError("limit and max_clients must be at least 1")
        if window < 0 or penalty < 0 or max_penalty < 0:
            raise ValueError("window, penalty and max_penalty must not be negative")
        self.limit = limit
        self.window = window
        self.penalty = penalty
        self.max_penalty = max_penalty
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _ClientFailures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def allowed(self, client: str, now: float) -> bool:
        """Whether a password check may be tried for `client` now.

        Args:
            client: the client's address (or the network it is grouped under).
            now: monotonic seconds.

        Returns:
            False while the address is locked out.
        """
        state = self._clients.get(client)
        return state is None or now >= state.locked_until

    def failed(self, client: str, now: float, credential: bytes | None = None) -> None:
        """Record a failed check; locks the address out when it reaches the limit.

        Args:
            client: the client's address.
            now: monotonic seconds.
            credential: the raw Proxy-Authorization value that failed, if known; only its
                SHA-256 is kept, to count a repeated wrong credential once.
        """
        state = self._clients.get(client)
        if state is None:
            state = self._clients[client] = _ClientFailures()
        self._clients.move_to_end(client)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        if now < state.locked_until:
            return
        while state.failures and state.failures[0][0] <= now - self.window:
            state.failures.popleft()
        digest = hashlib.sha256(credential).digest() if credential is not None else None
        if digest is not None and any(seen == digest for _, seen in state.failures):
            return
        state.failures.append((now, digest))
        if len(state.failures) >= self.limit:
            state.lockouts += 1
            # 2 ** n is capped before it can grow huge: past 2**20 the cap always applies.
            factor = 2 ** min(state.lockouts - 1, 20)
            state.locked_until = now + min(self.penalty * factor, self.max_penalty)
            state.failures.clear()

    def succeeded(self, client: str) -> None:
        """Forget the failures and lockouts of `client` (it authenticated).

        Args:
            client: the client's address.
        """
        self._clients.pop(client, None)


def challenge(realm: str, header: bytes = b"proxy-authenticate") -> list[tuple[bytes, bytes]]:
    """The headers of a 407 answer: one Proxy-Authenticate for Basic (RFC 7617, RFC 9110 §11.7.1).

    The realm is sent as a quoted-string (RFC 9110 §5.6.4), with ``\\`` and ``"`` escaped;
    non-ASCII text is sent as UTF-8 (obs-text). ``charset="UTF-8"`` asks browsers to send
    the credentials in UTF-8 (RFC 7617 §2.1).

    Args:
        realm: the realm text from the configuration.
        header: ``www-authenticate`` for a 401 (the web gateway).

    Returns:
        ``[(b"proxy-authenticate", b'Basic realm="...", charset="UTF-8"')]``.

    Raises:
        ValueError: the realm holds control characters other than tab, which a
            quoted-string cannot carry (a CR or LF would split the header).
    """
    if any((ch < " " and ch != "\t") or ch == "\x7f" for ch in realm):
        raise ValueError(f"realm {realm!r} contains control characters")
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    value = f'Basic realm="{quoted}", charset="UTF-8"'
    return [(header, value.encode("utf-8"))]


@functools.cache
def dummy_hash() -> str:
    """A bcrypt hash no password matches, at htpasswd -B's default cost (5), checked for
    unknown users so that a check takes as long whether or not the user exists."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=5)).decode("ascii")
