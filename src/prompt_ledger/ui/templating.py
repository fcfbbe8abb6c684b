"""The HTML pages' Jinja2 environment: autoescaping, strict, loaded from the package.

This is not the prompt renderer (``services.rendering``, a sandbox without autoescape for
plain-text prompts written by API callers): these templates are ours, and everything a user
wrote reaches them as data, escaped by autoescape, never marked safe.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import jinja2
from fastapi.templating import Jinja2Templates


def when(moment: datetime | None) -> str:
    """A UTC timestamp for people: to the second (the ISO form goes in ``datetime=``)."""
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def usd(value: float | Decimal | None) -> str:
    """A cost in US dollars: cents for sums, more digits for a fraction of a cent."""
    if value is None:
        return "—"
    amount = Decimal(str(value))
    if amount == 0:
        return "$0"
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    small = f"{amount:.6f}".rstrip("0").rstrip(".")
    return f"${small}" if small not in ("0", "-0") else "<$0.000001"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("prompt_ledger.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )
    env.filters["when"] = when
    env.filters["pretty_json"] = pretty_json
    env.filters["usd"] = usd
    return env


templates = Jinja2Templates(env=_environment())
