"""The one pixel-size rule: order of the sources, their labels, and the refusal when none knows."""

from __future__ import annotations

import numpy as np
import pytest

from hemotwin.errors import InputError
from hemotwin.io import pixel_size as ps


def _never():
    raise AssertionError("the estimate must not run when a better source is known")


def test_order_first_known_source_wins():
    assert ps.resolve(where="f", manifest=0.1, metadata=0.2, option=0.3, estimate=_never) == (0.1, "manifest")
    assert ps.resolve(where="f", metadata=0.2, metadata_source="TIFF resolution tags", option=0.3,
                      estimate=_never) == (0.2, "metadata (TIFF resolution tags)")
    assert ps.resolve(where="f", option=0.3, estimate=_never) == (0.3, "option")
    assert ps.resolve(where="f", estimate=lambda: (0.104, "40 red cells in 3 images")) == (
        0.104, "red cells (40 red cells in 3 images)")


def test_every_source_has_its_kind():
    got = [ps.resolve(where="f", manifest=0.1)[1], ps.resolve(where="f", metadata=0.1)[1],
           ps.resolve(where="f", option=0.1)[1], ps.resolve(where="f", estimate=lambda: (0.1, "n=5"))[1]]
    assert [ps.kind_of(s) for s in got] == list(ps.ORDER)
    assert got[1] == "metadata" and ps.kind_of("something else") is None


def test_no_source_names_the_file_and_the_ways_to_give_one():
    with pytest.raises(InputError, match="no pixel size") as err:
        ps.resolve(where="field_07.png", estimate=lambda: (None, "2 measurable red cells (need 10)"))
    msg = str(err.value)
    # The parameter, not an option string: the command line maps um_per_px to its option.
    assert msg.startswith("field_07.png:") and "give it (um_per_px)" in msg and "--" not in msg
    assert "the red-cell ruler refused: 2 measurable red cells (need 10)" in msg
    with pytest.raises(InputError, match="no red-cell estimate was tried"):
        ps.resolve(where="x.png")


def test_a_weak_red_cell_estimate_is_refused_and_a_good_one_labelled_with_its_quality():
    from hemotwin.vision.datasets import measure_red_cells, red_cell_ruler

    def discs(k: int) -> np.ndarray:
        img = np.full((300, 300, 3), 235, dtype=np.uint8)
        yy, xx = np.mgrid[:300, :300]
        for i in range(k):
            cy, cx = 50 + 100 * (i // 3), 50 + 100 * (i % 3)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 18.75**2] = (200, 120, 140)
        return img

    def ruler(images):
        def estimate():
            um, det = red_cell_ruler([measure_red_cells(im) for im in images])
            return um, det["quality"] if um is not None else det["reason"]
        return estimate

    with pytest.raises(InputError, match="red-cell ruler refused: 3 measurable red cells"):
        ps.resolve(where="few.png", estimate=ruler([discs(3)]))
    um, source = ps.resolve(where="many.png", estimate=ruler([discs(9), discs(9)]))
    assert um == pytest.approx(0.2, rel=0.03)  # 37.5 px discs for 7.5 µm; pixelated outline
    assert ps.kind_of(source) == ps.RED_CELLS and "18 red cells in 2 images, robust CV 0%" in source


def test_a_failed_estimate_does_not_hide_a_known_value():
    # Zero is not "unknown": only None is.
    assert ps.resolve(where="f", option=0.25, estimate=lambda: (None, "none")) == (0.25, "option")


@pytest.mark.parametrize("bad", [0.0, -0.1, 6.0, float("nan"), float("inf"), "abc"])
def test_option_range_is_checked(bad):
    with pytest.raises(InputError, match=r"between 0\.01 and 5"):
        ps.check_um_per_px(bad)


def test_option_check_passes_plausible_values():
    assert ps.check_um_per_px(None) is None and ps.check_um_per_px(0.0725) == pytest.approx(0.0725)


def test_label_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="not one of"):
        ps.label("guess")
