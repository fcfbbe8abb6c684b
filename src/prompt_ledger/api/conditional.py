"""Conditional GETs (RFC 9110 §8.8.3, §13.1.2): entity tags and ``If-None-Match``."""

from __future__ import annotations


def quote_etag(tag: str) -> str:
    """A strong entity tag for ``tag`` (a checksum: no quotes or spaces in it)."""
    return f'"{tag}"'


def none_match(if_none_match: str | None, etag: str) -> bool:
    """True when a GET with this ``If-None-Match`` is answered 304 for ``etag``.

    ``If-None-Match`` uses the weak comparison: ``W/"x"`` matches ``"x"``; ``*`` matches any
    current representation; a list matches if any member does.
    """
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = _opaque(etag)
    return any(_opaque(member) == wanted for member in if_none_match.split(","))


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag
