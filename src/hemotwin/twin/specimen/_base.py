"""Shared pydantic base: frozen records whose validation errors surface as :class:`InputError`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from hemotwin.errors import InputError


def as_input_error(model: str, err: ValidationError) -> InputError:
    """Turn the first pydantic error into an :class:`InputError` naming ``model.field``."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
    where = f"{model}.{loc}" if loc else model
    ctx = first.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, InputError):
        # A validator of ours already said exactly what was wrong: keep its wording.
        return InputError(f"{model}.{inner.where}" if loc == "" else where, inner.value,
                          inner.expected)
    return InputError(where, first.get("input"), first.get("msg", "a valid value"))


class Record(BaseModel):
    """Frozen pydantic model; constructing it with a bad value raises :class:`InputError`.

    Records are immutable so that a specimen handed to :func:`rasterize` can never be changed
    behind the caller's back (functions never mutate their inputs).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise as_input_error(type(self).__name__, err) from None
