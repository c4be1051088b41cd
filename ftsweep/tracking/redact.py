"""Secrets out of tracking URIs and the messages that quote them.

Secrets in a tracking URI (`user:password@`, `?token=`) are redacted by `redact_uri` wherever
a URI or an error message is shown or recorded.
"""

from __future__ import annotations

import re

# scheme://userinfo@ : the password (or a token used as the user name) goes. The userinfo
# runs to the last @ before whitespace: a password may itself hold an unescaped @, / or #
# (`http://u:p@ss@h` must not show `ss`); over-redacting a path with an @ in it is harmless.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^\s]+)@")
# ?token=... &password=... &X-Amz-Signature=... : the value goes.
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;][\w.\-]*(?:token|passw|pwd|secret|key|sig|credential|auth)[\w.\-]*=)[^&#\s]*",
    re.IGNORECASE,
)
REDACTED = "***"


def _redact_userinfo(match: re.Match) -> str:
    user, sep, _password = match["userinfo"].partition(":")
    # A user name is shown only where it is plainly one (no / ? # @ that a mangled URI or a
    # password cut at the wrong place would leave in it).
    plain = sep and re.fullmatch(r"[\w.\-%+]+", user)
    shown = f"{user}:{REDACTED}" if plain else REDACTED
    return f"{match['scheme']}{shown}@"


def redact_uri(text: str) -> str:
    """A URI, or any text that contains URIs, with passwords and tokens replaced by ***.

    `postgresql://mlflow:pw@db:5432/mlflow` -> `postgresql://mlflow:***@db:5432/mlflow`;
    `https://tok@host` -> `https://***@host`; `http://host/?token=abc` -> `http://host/?token=***`.
    """
    text = _USERINFO.sub(_redact_userinfo, text)
    return _SECRET_QUERY.sub(lambda m: m["key"] + REDACTED, text)
