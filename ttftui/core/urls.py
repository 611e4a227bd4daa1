"""Credentials in a server's URL (``http://user:password@host/v1``) never leave the process.

They are taken out of the URL where it is used (:func:`split_credentials`: the URL without them,
and the ``user``/``password`` to send as HTTP Basic authentication) and out of every URL that is
stored, printed or put in a message (:func:`without_credentials`): the recorded config, the report,
the engine's facts, error messages.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

# user:password@ wherever it stands in a text, the scheme before it kept: also where a URL does not
# parse as its writer meant ("http://admin:80#pw@host": urlsplit's host is "admin"), has a typo
# ("http:/u:pw@host", "u:pw@host") or is quoted. The password runs to the last "@" of the word.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*:/{0,2})?[^\s/'\"@<>]*:[^\s'\"<>]*@")


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(``url`` without its user:password@, (user, password) percent-decoded, or None)."""
    try:
        u = urlsplit(url)
    except ValueError:
        return _cut_userinfo(url), None
    if "@" not in u.netloc:
        return url, None
    userinfo, _, hostport = u.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit((u.scheme, hostport, u.path, u.query, u.fragment)), (unquote(user), unquote(password))


def without_credentials(url: str) -> str:
    """``url`` as it may be shown or stored: no user:password@ in it, however it is written."""
    return redact(split_credentials(url)[0])


def redact(text: str) -> str:
    """``text`` (a message, a URL) with every user:password@ cut out."""
    return _USERINFO.sub(lambda m: m.group("scheme") or "", text) if "@" in text else text


def ambiguous(url: str) -> bool:
    """An "@" left in a URL once its user:password@ is split off: a password with an unencoded "#",
    "?" or "/" (the URL's host would be wrong), or a typo; sending it could send the password elsewhere."""
    return "@" in split_credentials(url)[0]


def _cut_userinfo(text: str) -> str:
    """A URL that does not even parse: whatever stands between ``//`` and the last ``@`` before the
    path is cut out all the same."""
    head, sep, rest = text.partition("//")
    if not sep:
        return text
    netloc, slash, tail = rest.partition("/")
    return head + sep + netloc.rpartition("@")[2] + slash + tail
