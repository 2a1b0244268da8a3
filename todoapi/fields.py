"""Marshmallow fields with the SPEC's strictness: no coercion a careful client would not expect."""

import re
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib.resources import files
from typing import Any

from marshmallow import ValidationError, fields
from marshmallow.validate import Validator

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# Patterns published in the OpenAPI document. Each is read alike by Python's `re`, by ECMA-262 (what
# OpenAPI means by a pattern) and by the Rust engine schemathesis validates with: ASCII escapes only,
# no `\s`, `\w` or `\b` (their sets differ between the three), anchored at both ends.
NO_NUL = r"^[^\x00]*$"
# Exactly the characters `str.isspace()` is true for, i.e. what `str.strip()` removes.
SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NON_BLANK = rf"^[^\x00]*[^\x00{SPACE}][^\x00]*$"
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"(?![A-Za-z0-9-]{2}--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# An RFC 5321 mailbox in ASCII: a dot-atom, `@`, a domain name of at least two labels (none with
# `--` at positions 3-4, the IDNA marker). With `format: email`, which bounds the local part to 64
# and the domain to 253 characters, what Mailbox accepts: no quoted local parts, address literals
# or dotless domains. (Those bounds as lookaheads make generating from the pattern very slow.)
EMAIL = rf"^{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+{_LABEL}$"
_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# An absolute http(s) URI (RFC 3986): a host name, IPv4 or bracketed IPv6 address, no user info, a
# port in range. Hosts are checked further when the URL is set (see check_webhook_url).
HTTP_URL = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://(?:(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+|\[[0-9A-Fa-f:.]+\])"
    rf"(?::{_PORT})?"
    rf"(?:/{_PCHAR}*)*(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?$"
)


class FullMatch(Validator):
    """The whole value matches `regex`, which apispec documents as the `pattern`.

    marshmallow's Regexp uses `re.match`, where `$` also matches before a trailing newline.
    """

    def __init__(self, regex: str, error: str):
        self.regex = re.compile(regex)
        self.error = self.message = error

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self.message)
        return value


class Mailbox(FullMatch):
    """An email address as EMAIL spells it, within RFC 5321's lengths (local part 64, domain 253)."""

    def __init__(self) -> None:
        super().__init__(EMAIL, error="Not a valid email address.")

    def __call__(self, value: str) -> str:
        local, _, domain = super().__call__(value).rpartition("@")
        if len(local) > 64 or len(domain) > 253:
            raise ValidationError(self.message)
        return value


class Text(fields.String):
    """A string without NUL characters, which PostgreSQL cannot store or compare.

    The OpenAPI document says so with a pattern, unless the field documents a stricter one.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        documented = any(isinstance(getattr(v, "regex", None), re.Pattern) for v in self.validators)
        if "pattern" not in self.metadata and not documented:
            self.metadata = {**self.metadata, "pattern": NO_NUL}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        return text


class TrimmedStr(Text):
    """Text stripped of surrounding whitespace before validators see it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class StrictBool(fields.Boolean):
    """JSON true/false only; marshmallow's Boolean also takes 0, 1 and "yes"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryBool(fields.Boolean):
    """A query-string flag: exactly `true` or `false`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        raise ValidationError("Must be true or false.")


class StrictInt(fields.Integer):
    """A JSON integer; rejects booleans, floats and numeric strings."""

    def __init__(self, **kwargs: Any):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class QueryInt(fields.Integer):
    """A query-string integer in ASCII digits, as a URL would write it: marshmallow's Integer reads
    the string with `int()`, which also takes `+5`, ` 5` and other scripts' digits
    (FULLWIDTH DIGIT FIVE)."""

    DIGITS = re.compile(r"-?[0-9]{1,20}")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not self.DIGITS.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class IsoDate(fields.Date):
    """`YYYY-MM-DD` exactly; `date.fromisoformat` alone also takes `20250131`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
            raise ValidationError("Not a valid date; use YYYY-MM-DD.")
        return super()._deserialize(value, attr, data, **kwargs)


def normalize_tag(tag: str) -> str:
    """Trimmed and lower-cased, one character for one: `İ` (U+0130) becomes `i`, where `str.lower()`
    would add a combining dot and make the tag longer than the length that was checked."""
    return tag.strip().replace("\u0130", "i").lower()


class Tags(fields.List):
    """Tags are trimmed, lower-cased, blanks dropped, de-duplicated and sorted.

    The limits are what the OpenAPI document can state: at most MAX_TAGS strings as sent (before
    de-duplication), each at most MAX_LENGTH characters once trimmed.
    """

    MAX_TAGS = 20
    MAX_LENGTH = 50

    def __init__(self, **kwargs: Any):
        metadata = {"maxItems": self.MAX_TAGS, **kwargs.pop("metadata", {})}
        super().__init__(Text(metadata={"maxLength": self.MAX_LENGTH}), metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        # Counted before the items are read: a 1 MiB body holds 200,000 of them.
        if isinstance(value, list | tuple) and len(value) > self.MAX_TAGS:
            raise ValidationError(f"At most {self.MAX_TAGS} tags.")
        raw: list[str] = super()._deserialize(value, attr, data, **kwargs)  # type: ignore[assignment]
        tags = sorted({normalize_tag(tag) for tag in raw if tag.strip()})
        if any(len(tag) > self.MAX_LENGTH for tag in tags):
            raise ValidationError(f"Tags may be at most {self.MAX_LENGTH} characters.")
        return tags


class QueryDateTime(fields.AwareDateTime):
    """An ISO 8601 datetime in a query string; no offset means UTC.

    An unencoded `+` in a query string arrives as a space, so `...T10:00:00 01:00` is read as `+01:00`.
    At most MAX_LENGTH characters (nanoseconds and an offset fit), so that a request line stays bounded.
    """

    MAX_LENGTH = 64

    def __init__(self, **kwargs: Any):
        metadata = {"maxLength": self.MAX_LENGTH, **kwargs.pop("metadata", {})}
        super().__init__(format="iso", default_timezone=UTC, metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str) and len(value) > self.MAX_LENGTH:
            raise ValidationError(f"Longer than {self.MAX_LENGTH} characters.")
        if isinstance(value, str) and "T" in value:
            day, _, clock = value.partition("T")
            value = f"{day}T{clock.replace(' ', '+')}"
        moment: datetime = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Out of range.") from None


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    # The tzdata package's list of IANA names: the host's zoneinfo directory also
    # holds files such as `localtime` and `posixrules` that are not zone names.
    return frozenset(files("tzdata").joinpath("zones").read_text().split())


@lru_cache(maxsize=1)
def timezone_pattern() -> str:
    """A pattern matching exactly the zone names, `Area/(?:City|...)` to keep it short.

    A pattern rather than an `enum`: schemathesis sends one request per `enum` value.
    """
    areas: dict[str, list[str]] = {}
    for name in sorted(_timezones()):
        area, slash, rest = name.rpartition("/")
        areas.setdefault(area + slash, []).append(rest.replace("+", "\\+"))
    return "^(?:{})$".format("|".join(f"{area}(?:{'|'.join(names)})" for area, names in areas.items()))


class Timezone(Text):
    """An IANA time zone name, such as `Europe/Berlin`; the OpenAPI document's pattern names them all."""

    def __init__(self, **kwargs: Any):
        metadata = {"pattern": timezone_pattern(), **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs).strip()
        if name not in _timezones():
            raise ValidationError("Not a known IANA time zone name.")
        return name
