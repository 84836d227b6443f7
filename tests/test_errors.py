"""Project exceptions carry the field, the value and the expectation, and survive pickling; pydantic's
messages are told in the same words."""

from __future__ import annotations

import enum
import pickle
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hemotwin.cli._common import validation_error_in_our_words
from hemotwin.errors import InputError, OutputExistsError


def test_input_error_names_field_value_and_expectation_and_pickles():
    err = InputError("profile.optics.na", 1.7, "a value below the immersion index")
    text = str(err)
    assert "profile.optics.na" in text and "1.7" in text and "immersion" in text
    # Errors raised in worker processes are pickled back to the parent.
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, InputError) and str(back) == text and back.where == err.where


def test_output_exists_error_mentions_overwrite_and_pickles():
    err = OutputExistsError("/tmp/out")
    assert "--overwrite" in str(err)
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


# ------------------------------------------------------------------ pydantic errors in our words


class _Colour(enum.Enum):
    red = "red"
    blue = "blue"


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size_px: int = Field(64, ge=16)
    n_fields: int = Field(1, gt=0)
    randomize: float = Field(0.0, le=3.0)
    alpha: float = Field(0.5, lt=1.0)
    backend: Literal["onnxruntime", "torch"] = "onnxruntime"
    colour: _Colour = _Colour.red
    seed: int = 0
    tau: float = 7.0
    out: str
    classes: list[str] = []

    @field_validator("classes")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if "XYZ" in v:
            raise InputError("classes", "XYZ", "one of NGS, LYT")
        return v


@pytest.mark.parametrize(("fields", "message"), [
    ({"size_px": 1}, "--size: got 1; expected a number >= 16"),
    ({"n_fields": 0}, "--fields: got 0; expected a number > 0"),
    ({"randomize": 9}, "--randomize: got 9; expected a number <= 3"),
    ({"alpha": 2.5}, "--alpha: got 2.5; expected a number < 1"),
    ({"backend": "tf"}, "--backend: got 'tf'; expected one of 'onnxruntime', 'torch'"),
    ({"colour": "green"}, "colour: got 'green'; expected one of 'red', 'blue'"),
    ({"seed": "seven"}, "--seed: got 'seven'; expected a whole number"),
    ({"seed": 1.5}, "--seed: got 1.5; expected a whole number"),
    ({"tau": "long"}, "--tau: got 'long'; expected a number"),
    ({"out": None, "_drop": "out"}, "--out: got nothing; expected a value (it is required)"),
    ({"zoom": 3}, "zoom: got 3; expected a known setting name (this one is not)"),
    ({"classes": ["XYZ"]}, "--classes: got 'XYZ'; expected one of NGS, LYT"),
], ids=["ge", "gt", "le", "lt", "literal", "enum", "int_parsing", "int_from_float", "float_parsing", "missing",
        "extra_forbidden", "our_own_error"])
def test_validation_errors_read_as_our_messages(fields, message):
    data = {"out": "o", **fields}
    data.pop(data.pop("_drop", None) or "_none", None)
    with pytest.raises(ValidationError) as info:
        _Options(**data)
    err = validation_error_in_our_words(info.value)
    assert isinstance(err, InputError)
    assert str(err) == message
    assert "Input should" not in str(err) and "Field required" not in str(err)


def test_nested_fields_are_named_under_their_option_or_file():
    class _Inner(BaseModel):
        na: float = Field(0.5, gt=0)

    class _Outer(BaseModel):
        profile: _Inner

    with pytest.raises(ValidationError) as info:
        _Outer(profile={"na": -1})
    assert str(validation_error_in_our_words(info.value)) == "--profile: na: got -1; expected a number > 0"
    assert str(validation_error_in_our_words(info.value, where="mine.yaml")) == (
        "mine.yaml: profile.na: got -1; expected a number > 0")
