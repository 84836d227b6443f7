"""Project exceptions: every error names the file or field, the bad value and what was expected."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class HemotwinError(Exception):
    """Base class of every error the package raises on purpose."""


class InputError(HemotwinError, ValueError):
    """A value supplied by the user is not acceptable.

    Parameters
    ----------
    where
        The file, field or option that holds the value (e.g. ``"profile.optics.na"``).
    value
        The offending value.
    expected
        A short statement of what would have been accepted.
    """

    def __init__(self, where: str, value: Any, expected: str) -> None:
        self.where = where
        self.value = value
        self.expected = expected
        super().__init__(f"{where}: got {value!r}; expected {expected}")

    def __reduce__(self):
        # Picklable, so an error raised in a worker process reaches the parent intact.
        return (type(self), (self.where, self.value, self.expected))


class OutputExistsError(HemotwinError, FileExistsError):
    """An output would overwrite existing data and ``overwrite`` was not given."""

    def __init__(self, path: Any) -> None:
        self.path = path
        super().__init__(f"{path}: output already exists; allow overwriting to replace it "
                         "(--overwrite on the command line)")

    def __reduce__(self):
        return (type(self), (self.path,))


#: pydantic error type -> what was expected (types whose wording needs no context).
_PLAIN: dict[str, str] = {
    "missing": "a value (it is required)",
    "float_parsing": "a number", "float_type": "a number", "finite_number": "a finite number",
    "int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "text", "list_type": "a list", "tuple_type": "a list", "dict_type": "an object ({...})",
    "model_type": "an object ({...})", "model_attributes_type": "an object ({...})",
}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}


def expected_of(err: Mapping[str, Any], *, known_fields: Iterable[str] = ()) -> str:
    """What one pydantic error (an item of ``ValidationError.errors()``) expected, in our words.

    The one translation of pydantic's wording ("Input should be greater than or equal to 2") into
    what :class:`InputError` carries ("a number >= 2"), for the library and the command line alike.

    Parameters
    ----------
    err
        The error record (``type``, ``msg``, ``ctx``).
    known_fields
        The fields of the record, listed when the error is an unknown field.

    Returns
    -------
    str
        E.g. ``"a number >= 0"``, ``"one of 'AML', 'MDS'"``, ``"only the known fields: id, ..."``.
    """
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind in _BOUNDS:
        op, key = _BOUNDS[kind]
        value = ctx.get(key)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        return f"a number {op} {shown}"
    if kind == "extra_forbidden":
        fields = ", ".join(known_fields)
        return f"only the known fields: {fields}" if fields else "a known setting name (this one is not)"
    if kind in ("literal_error", "enum"):
        return f"one of {str(ctx.get('expected', 'the listed values')).replace(' or ', ', ')}"
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
