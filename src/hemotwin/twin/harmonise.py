"""Twin harmonisation: re-express images of a new scanner in the stain space of a reference scanner.

The inverse of re-imaging augmentation, applied at test time (the TIAToolbox ``fit``/``transform``
stain-normaliser pattern, with the twin's blood-stain absorbers instead of the H&E matrix):

1. :meth:`StainHarmoniser.fit` on the *reference* images (a model's training set) learns that
   scanner's stain vectors and white point (:class:`~hemotwin.twin.reimage.StainBasis`) and the
   typical nuclear stain level: the median over images of the ``quantile``-th percentile of the
   purple (chromatin) amount.
2. :meth:`StainHarmoniser.transform` unmixes each new image with a basis fitted on the *new*
   images themselves (no labels: only their colours), rescales its purple amount so that its
   nuclear stain level matches the reference (staining time and dye batch change it by a factor
   of two or more between laboratories — BCCD's nuclei hold half of PBC's chromatin OD), and
   renders the amounts back through the reference scanner's linear OD model.

Only the chromatin (purple) level is rescaled: the eosin amount of a crop depends on how many red
cells and eosinophil granules it holds, so a per-image eosin percentile would erase the very
difference between an eosinophil and a neutrophil. Measured on BCCD with a PBC-trained model
(docs/benchmarks.md): +7 to +8 points of accuracy over the raw images.

>>> h = StainHarmoniser().fit(training_images)                 # doctest: +SKIP
>>> new = h.transform(images_from_another_scanner)              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hemotwin.errors import InputError
from hemotwin.twin.reimage import UNMIXED, StainBasis
from hemotwin.twin.specimen.maps import ABSORBERS, AbsorberMaps

__all__ = ["StainHarmoniser"]

_SCHEMA = "hemotwin.stain_harmoniser/1"
_PURPLE = ABSORBERS.index("purple")
_EOSIN = ABSORBERS.index("eosin")
_HB = ABSORBERS.index("hemoglobin")


def _stack(images, where: str) -> list[np.ndarray]:
    out = [np.asarray(im) for im in images]
    if not out:
        raise InputError(where, "no images", "at least one RGB image")
    return out


class StainHarmoniser:
    """Fit on a reference scanner's images; transform other scanners' images into its stain space.

    Parameters
    ----------
    quantile
        Percentile of the per-pixel purple amount that measures an image's nuclear stain level
        (99: the densest chromatin, robust to how much of the crop the nucleus fills).
    max_scale
        Largest factor (and smallest, its inverse) applied to an image's purple amount; protects
        crops with no nucleus (blank, debris) from being inflated.
    fit_pixels
        Pixels pooled to fit each stain basis.
    """

    def __init__(self, *, quantile: float = 99.0, max_scale: float = 4.0, fit_pixels: int = 200_000) -> None:
        if not (50.0 <= quantile <= 100.0):
            raise InputError("StainHarmoniser.quantile", quantile, "a percentile in [50, 100]")
        if not (1.0 <= max_scale <= 20.0):
            raise InputError("StainHarmoniser.max_scale", max_scale, "a factor in [1, 20]")
        self.quantile = float(quantile)
        self.max_scale = float(max_scale)
        self.fit_pixels = int(fit_pixels)
        self.reference_: StainBasis | None = None
        self.level_: float | None = None
        self.n_fit_images_ = 0

    # -- helpers ----------------------------------------------------------------------------------
    def _level(self, basis: StainBasis, rgb: np.ndarray, um_per_px: float) -> tuple[AbsorberMaps, float]:
        maps = basis.transform(rgb, um_per_px=um_per_px)
        return maps, float(np.percentile(maps.absorbers[_PURPLE], self.quantile))

    def _check_fitted(self) -> None:
        if self.reference_ is None or self.level_ is None:
            raise InputError("StainHarmoniser", "not fitted", "fit(reference_images) or from_dict(...) first")

    # -- estimator API ----------------------------------------------------------------------------
    def fit(self, images: Sequence[np.ndarray], *, max_images: int = 64, seed: int = 0) -> StainHarmoniser:
        """Learn the reference scanner's stain basis and nuclear stain level from its images."""
        imgs = _stack(images, "StainHarmoniser.fit(images)")
        if len(imgs) > max_images:
            pick = np.random.default_rng(seed).choice(len(imgs), size=max_images, replace=False)
            imgs = [imgs[i] for i in sorted(pick)]
        self.reference_ = StainBasis().fit(imgs, max_pixels=self.fit_pixels, seed=seed)
        levels = [self._level(self.reference_, im, 1.0)[1] for im in imgs]
        self.level_ = float(np.median(levels))
        if not self.level_ > 0:
            raise InputError("StainHarmoniser.fit(images)", f"nuclear stain level {self.level_}",
                             "stained cells in the reference images")
        self.n_fit_images_ = len(imgs)
        return self

    def fit_source(self, images: Sequence[np.ndarray], *, seed: int = 0) -> StainBasis:
        """The stain basis of a new scanner, fitted on its (unlabelled) images."""
        return StainBasis().fit(_stack(images, "images"), max_pixels=self.fit_pixels, seed=seed)

    def transform(self, images: Sequence[np.ndarray], *, source: StainBasis | None = None,
                  um_per_px: float = 1.0) -> np.ndarray:
        """Images re-expressed in the reference stain space: ``N x H x W x 3`` uint8.

        ``source`` is the new scanner's basis; by default it is fitted on ``images`` themselves,
        so pass a batch from one scanner (a few dozen crops or one field are enough). Inputs are
        not modified.
        """
        self._check_fitted()
        imgs = _stack(images, "images")
        src = source if source is not None else self.fit_source(imgs)
        if not isinstance(src, StainBasis):
            raise InputError("source", type(src).__name__, "a StainBasis or None")
        out = []
        for im in imgs:
            maps, level = self._level(src, im, um_per_px)
            scale = float(np.clip(self.level_ / max(level, 1e-6), 1.0 / self.max_scale, self.max_scale))
            ab = maps.absorbers.copy()
            ab[_PURPLE] *= np.float32(scale)
            ab[_HB] = np.float32(src.hb_per_eosin) * ab[_EOSIN]
            scaled = AbsorberMaps(ab, maps.instances, maps.compartments, maps.um_per_px)
            out.append(self.reference_.inverse_transform(scaled))
        return np.stack(out)

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able state (stored in model files)."""
        self._check_fitted()
        return {"schema": _SCHEMA, "quantile": self.quantile, "max_scale": self.max_scale,
                "level": self.level_, "n_fit_images": self.n_fit_images_, "reference": self.reference_.to_dict(),
                "components": list(UNMIXED)}

    @classmethod
    def from_dict(cls, data: dict) -> StainHarmoniser:
        """A harmoniser from :meth:`to_dict`'s output (as stored in model files)."""
        if not isinstance(data, dict) or data.get("schema") != _SCHEMA:
            raise InputError("stain harmoniser", (data or {}).get("schema") if isinstance(data, dict) else data,
                             f"a dict with schema {_SCHEMA!r}")
        obj = cls(quantile=float(data["quantile"]), max_scale=float(data["max_scale"]))
        obj.reference_ = StainBasis.from_dict(data["reference"])
        obj.level_ = float(data["level"])
        obj.n_fit_images_ = int(data.get("n_fit_images", 0))
        return obj

    def __repr__(self) -> str:
        lvl = "unfitted" if self.level_ is None else f"level={self.level_:.3f}"
        return f"StainHarmoniser(quantile={self.quantile:g}, {lvl})"
