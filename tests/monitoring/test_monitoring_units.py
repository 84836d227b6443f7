"""Units: exact conversion to canonical units; missing, ambiguous and impossible values refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hemotwin.errors import InputError
from hemotwin.monitoring.units import count_to_1e9_per_l, hb_to_g_per_dl, mrd_to_pct, percent, to_decimal


@pytest.mark.parametrize(("value", "unit", "field", "expected"), [
    (1000, "/µL", "anc", Decimal("1.0")),  # the §5 CR boundary must survive the conversion exactly
    (1000, "/μL", "anc", Decimal("1.0")),  # Greek mu as well as the micro sign
    ("1000", "/uL", "anc", Decimal("1.0")),
    (999, "cells/uL", "anc", Decimal("0.999")),
    (500, "/mm3", "anc", Decimal("0.5")),
    (1.0, "x10^9/L", "anc", Decimal("1.0")),
    (1.0, "×10^9/L", "anc", Decimal("1.0")),
    (0.1, "10^9/L", "anc", Decimal("0.1")),
    (1, "K/µL", "anc", Decimal("1")),
    (100000, "/uL", "platelets", Decimal(100)),
    (100, "G/L", "platelets", Decimal(100)),
    (0, "/uL", "wbc", Decimal(0)),
])
def test_count_conversion_is_exact(value, unit, field, expected):
    assert count_to_1e9_per_l(value, unit, "P 2024-01-01 anc", field=field) == expected


@pytest.mark.parametrize(("value", "unit", "field", "fragment"), [
    (1.2, None, "anc", "unit"),  # units are explicit
    (1.2, "", "anc", "unit"),
    (1.2, "furlongs", "anc", "x10^9/L"),  # unknown unit
    (-1, "x10^9/L", "anc", ">= 0"),  # negative count
    (0.8, "/uL", "anc", "looks like x10^9/L"),  # ambiguous: 0.8 cells/µL
    (150000, "x10^9/L", "platelets", "looks like /µL"),  # impossible platelets
    (2000, "x10^9/L", "wbc", "at most"),
    ("abc", "/uL", "anc", "a number"),
    (float("nan"), "/uL", "anc", "finite"),
    (True, "/uL", "anc", "a number"),
])
def test_count_conversion_refuses(value, unit, field, fragment):
    with pytest.raises(InputError) as err:
        count_to_1e9_per_l(value, unit, "P 2024-01-01 anc", field=field)
    assert fragment in str(err.value)
    assert "P 2024-01-01 anc" in str(err.value)


@pytest.mark.parametrize(("value", "unit", "expected"), [(84, "g/L", Decimal("8.4")), (8.4, "g/dL", Decimal("8.4"))])
def test_hb(value, unit, expected):
    assert hb_to_g_per_dl(value, unit, "hb") == expected


@pytest.mark.parametrize(("value", "unit"), [(8.4, "mmol/L"), (84, "g/dL"), (8.4, None)])
def test_hb_refuses(value, unit):
    with pytest.raises(InputError):
        hb_to_g_per_dl(value, unit, "hb")


@pytest.mark.parametrize(("value", "unit", "expected"), [
    (2, "%", Decimal(2)), (0.02, "fraction", Decimal(2)), (200, "copies/1e4", Decimal(2)),
    (2000, "copies/1e5", Decimal(2)), (0.001, "%", Decimal("0.001")),
])
def test_mrd_units(value, unit, expected):
    assert mrd_to_pct(value, unit, "mrd") == expected


@pytest.mark.parametrize(("value", "unit"), [(0.5, None), (0.5, "ppm"), (-1, "%"), (101, "%"), (2, "fraction")])
def test_mrd_units_refuse(value, unit):
    with pytest.raises(InputError):
        mrd_to_pct(value, unit, "mrd")


@pytest.mark.parametrize("value", [-0.1, 100.01, 250])
def test_percent_range(value):
    with pytest.raises(InputError, match="between 0 and 100"):
        percent(value, "marrow_blasts_pct")


@given(st.integers(min_value=1, max_value=999_999))
def test_per_ul_round_trip_is_exact(n):
    # /µL -> x10^9/L -> /µL returns the same integer, and the threshold is exactly n >= 1000.
    v = count_to_1e9_per_l(n, "/uL", "anc", field="anc")
    assert v * 1000 == n
    assert (v >= Decimal("1.0")) is (n >= 1000)


@given(st.decimals(min_value=0, max_value=999, places=3, allow_nan=False, allow_infinity=False))
def test_float_input_keeps_the_typed_decimal(d):
    # A caller's float becomes the decimal of its shortest repr: the number the person typed.
    x = float(d)
    assert to_decimal(x, "v") == d
    assert count_to_1e9_per_l(x, "x10^9/L", "anc", field="anc") == d
