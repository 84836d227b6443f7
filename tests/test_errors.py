"""Project exceptions carry the field, the value and the expectation, and survive pickling."""

from __future__ import annotations

import pickle

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
