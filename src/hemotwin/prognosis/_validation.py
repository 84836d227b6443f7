"""Validation errors of pydantic records said in the project's words (no pydantic wording reaches a user).

pydantic describes a failed field as "Input should be greater than or equal to 2" or "Extra inputs
are not permitted"; :func:`expected_of` turns such an error into the short statement of what would
have been accepted that :class:`hemotwin.errors.InputError` carries ("an integer >= 2", "only the
known fields: ...").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: pydantic error type -> what was expected (types whose wording needs no context).
_PLAIN: dict[str, str] = {
    "missing": "a value (this field is required)",
    "float_parsing": "a number", "float_type": "a number", "finite_number": "a finite number",
    "int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "text", "list_type": "a list", "tuple_type": "a list", "dict_type": "an object ({...})",
    "model_type": "an object ({...})", "model_attributes_type": "an object ({...})",
}


def expected_of(err: Mapping[str, Any], *, known_fields: Iterable[str] = ()) -> str:
    """What one pydantic error (an item of ``ValidationError.errors()``) expected, in our words.

    Parameters
    ----------
    err
        The error record (``type``, ``msg``, ``ctx``).
    known_fields
        The fields of the record, listed when the error is an unknown field.

    Returns
    -------
    str
        E.g. ``"a number >= 0"``, ``"one of 'AML' or 'MDS'"``, ``"only the known fields: id, ..."``.
    """
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
              "less_than": ("<", "lt")}
    if kind in bounds:
        op, key = bounds[kind]
        value = ctx.get(key)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        return f"a number {op} {shown}"
    if kind == "extra_forbidden":
        fields = ", ".join(known_fields)
        return f"only the known fields: {fields}" if fields else "no such field"
    if kind == "literal_error":
        return f"one of {ctx.get('expected', 'the listed values')}"
    if kind == "string_too_short":
        n = ctx.get("min_length")
        return "a non-empty text" if n == 1 else f"a text of at least {n} characters"
    if kind in _PLAIN:
        return _PLAIN[kind]
    msg = str(err.get("msg", "a valid value"))
    # Our own validators raise ValueError("...") whose text pydantic prefixes; keep the text only.
    for prefix in ("Value error, ", "Assertion failed, ", "Input should be "):
        msg = msg.removeprefix(prefix)
    return msg
