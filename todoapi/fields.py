"""Marshmallow fields with the SPEC's strictness: no coercion a careful client would not expect."""

import re
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib.resources import files
from typing import Any

from marshmallow import ValidationError, fields

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Text(fields.String):
    """A string without NUL characters, which PostgreSQL cannot store or compare."""

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


class IsoDate(fields.Date):
    """`YYYY-MM-DD` exactly; `date.fromisoformat` alone also takes `20250131`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
            raise ValidationError("Not a valid date; use YYYY-MM-DD.")
        return super()._deserialize(value, attr, data, **kwargs)


class Tags(fields.List):
    """Tags are trimmed, lower-cased, blanks dropped, de-duplicated and sorted."""

    MAX_TAGS = 20
    MAX_LENGTH = 50

    def __init__(self, **kwargs: Any):
        super().__init__(Text(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        raw: list[str] = super()._deserialize(value, attr, data, **kwargs)  # type: ignore[assignment]
        tags = sorted({tag.strip().lower() for tag in raw if tag.strip()})
        too_long = [tag for tag in tags if len(tag) > self.MAX_LENGTH]
        if too_long:
            raise ValidationError(f"Tags may be at most {self.MAX_LENGTH} characters.")
        if len(tags) > self.MAX_TAGS:
            raise ValidationError(f"At most {self.MAX_TAGS} tags.")
        return tags


class QueryDateTime(fields.AwareDateTime):
    """An ISO 8601 datetime in a query string; no offset means UTC.

    An unencoded `+` in a query string arrives as a space, so `...T10:00:00 01:00` is read as `+01:00`.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
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


class Timezone(Text):
    """An IANA time zone name, such as `Europe/Berlin`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs).strip()
        if name not in _timezones():
            raise ValidationError("Not a known IANA time zone name.")
        return name
