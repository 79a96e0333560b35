"""The Lookup page's form: the fields a feature service takes, and the Feast request they make.

The console does not read the store itself: it turns the form into the JSON body of
`POST /get-online-features` (Feast's format) and hands it to the feature server, so a lookup goes
through exactly the code that answers the API (`fsplug.console.app`).

Each field holds one value per entity, comma-separated (`1001, 1002`), or a JSON array
(`[1001, 1002]`, needed for strings holding commas and for list features). A request feature given
one value while several entities are asked for gets that value for every entity; one left empty is
left out of the request (its default applies, or the API says it is missing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

from fsplug.types import DType

__all__ = ["FormField", "form_fields", "feast_request"]


@dataclass(frozen=True)
class FormField:
    """One input of the lookup form: a join key or a request feature of the service."""

    name: str
    dtype: DType
    is_key: bool
    default: Any = None
    description: str = ""


def form_fields(plan: Any, descriptions: Mapping[str, str] | None = None) -> list[FormField]:
    """The join keys (first-use order) and request features a service's plan takes.

    Args:
        plan: the service's RetrievalPlan.
        descriptions: request feature name -> its description, shown next to the field.
    """
    out: list[FormField] = []
    seen: set[str] = set()
    for g in plan.groups:
        for key, dtype in zip(g.join_keys, g.key_dtypes, strict=True):
            if key not in seen:
                seen.add(key)
                out.append(FormField(key, dtype, True))
    for c in plan.request_columns:
        if c.feature not in seen:
            seen.add(c.feature)
            out.append(FormField(c.feature, c.dtype, False, c.default, (descriptions or {}).get(c.feature, "")))
    return out


def _value(text: str, dtype: DType) -> Any:
    """A typed value for a text field; text that does not parse is sent as it is, for the API to refuse
    with its own message (the console adds no rules of its own)."""
    try:
        if dtype is DType.INT64:
            return int(text)
        if dtype in (DType.FLOAT64, DType.FLOAT32):
            return float(text)
        if dtype is DType.BOOL and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if dtype is DType.FLOAT64_LIST:
            return json.loads(text)
    except ValueError:
        return text
    return text


def _values(text: str, dtype: DType) -> list[Any]:
    text = text.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            if dtype is DType.FLOAT64_LIST and not all(isinstance(v, list) or v is None for v in parsed):
                return [parsed]  # one entity's list
            return parsed
    return [_value(part.strip(), dtype) for part in text.split(",")]


def feast_request(service: str, fields: list[FormField], form: Mapping[str, str],
                  full_feature_names: bool = False) -> dict[str, Any]:
    """The `POST /get-online-features` body for the form's values.

    Args:
        service: the feature service.
        fields: what `form_fields` gave for it.
        form: field name -> the text typed (missing or blank: not given).
        full_feature_names: ask for `view__feature` names (a service two of whose outputs share a name).

    Returns:
        `{"feature_service": service, "entities": {column: [values]}}` (and `"full_feature_names": true`
        when asked); `entities` holds the join keys given and the request features given (one value
        repeated for every entity).
    """
    entities: dict[str, list[Any]] = {}
    for f in fields:
        text = form.get(f.name, "")
        if f.is_key and text.strip():
            entities[f.name] = _values(text, f.dtype)
    n = max((len(v) for v in entities.values()), default=1)
    for f in fields:
        text = form.get(f.name, "")
        if not f.is_key and text.strip():
            vals = _values(text, f.dtype)
            entities[f.name] = vals * n if len(vals) == 1 and n > 1 else vals
    body: dict[str, Any] = {"feature_service": service, "entities": entities}
    if full_feature_names:
        body["full_feature_names"] = True
    return body
