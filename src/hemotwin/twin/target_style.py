"""Re-imaging calibrated to a deployment scanner from its unlabelled images.

The twin's re-imaging (:mod:`hemotwin.twin.reimage`) draws scanners around four presets. A
laboratory that adopts a model has something better than presets: a few dozen unlabelled images
from its own microscope. :class:`TargetStyle` fits, from those images and from the training
images, what separates the two scanners in the twin's own terms, and then re-images each
training cell as if the target scanner had taken it:

- **stain vectors** of both scanners (:class:`~hemotwin.twin.reimage.StainBasis` fitted on each
  set), so the amounts unmixed from a training crop are rendered back with the target's colours;
- **stain levels**, as target / source ratios of medians over images: the nucleus's purple and
  azure (medians over the nucleus: together they set its hue), the eosin bound to chromatin
  (median over the nucleus) and the red cells' eosin (median over eosin-stained pixels outside
  nuclei), with the spread of the target's levels between its images (staining time, dye
  batch). White-cell granules and cytoplasm keep their eosin (jittered): no label-free measure
  separates them from the target's commonest cell, and a target's eosinophil granules can stay
  vivid while its red cells are pale (BCCD's are);
- **resolution**: the Gaussian blur (µm) that brings the source's red-cell rim sharpness (per µm,
  normalised by the stain level) down to the target's; zero when the target is as sharp or
  sharper, since re-imaging cannot add detail. Red cells, not nuclei: they are the same discs in
  every laboratory, where nuclear texture differs with the stain;
- **chromatin texture**: the Gaussian smoothing (µm) of the nucleus's absorbers that brings the
  source's nuclear texture (high-pass purple over its level, which also holds the dark rim a
  sharpening filter draws around each nucleus) down to the target's, after the blur above.
  BCCD's nuclei are smooth while its red-cell rims are sharp; PBC nuclei restyled without this
  showed their speckle and their sharpening rim as a dark ring once the stain was paled;
- **white point** of the target's clear glass, per image (the lamp varies between fields).

Measured on BCCD's 23 unscored fields against PBC training crops (docs/benchmarks.md): nuclear
smoothing 0.40 µm (texture 0.16 against 0.30), then purple x0.69, azure x0.23, red-cell eosin
x0.45, chromatin eosin x0.10, no blur. Before the texture fit, on 64 random fields (purple x0.49,
azure x0.16), a PBC nucleus re-imaged this way had BCCD's median nuclear colour within 4 levels
per channel (148, 113, 212 against 145, 112, 211; PBC's own 75, 29, 135).

Each call draws levels, blur and white point from the fitted spread, so the model sees the
target's scanner and its run-to-run variation, never the target's cells: no target label is
used, and the target images need not contain the classes being trained.

It is the training-time counterpart of :class:`~hemotwin.twin.harmonise.StainHarmoniser`
(which maps target images into the source's stain space at test time); both are ``fit`` on
unlabelled images of the other scanner.

>>> style = TargetStyle().fit(training_crops, lab_fields, source_um_per_px=0.1125,   # doctest: +SKIP
...                           target_um_per_px=0.1125)
>>> out = style(rgb, 0.1125, np.random.default_rng(0))                               # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from hemotwin.errors import InputError
from hemotwin.twin.reimage import StainBasis, estimate_background
from hemotwin.twin.specimen.maps import ABSORBERS, AbsorberMaps

__all__ = ["TargetStyle"]

_SCHEMA = "hemotwin.target_style/1"
_PURPLE = ABSORBERS.index("purple")
_AZURE = ABSORBERS.index("azure_b")
_EOSIN = ABSORBERS.index("eosin")
_HB = ABSORBERS.index("hemoglobin")
#: Blur grid (µm, Gaussian sigma) searched for the resolution match.
_SIGMA_GRID_UM = np.round(np.arange(0.0, 1.51, 0.05), 3)


def _images(images, where: str) -> list[np.ndarray]:
    out = [np.asarray(im) for im in images]
    if not out:
        raise InputError(where, "no images", "at least one RGB image")
    for i, im in enumerate(out):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise InputError(f"{where}[{i}]", f"{im.dtype} {im.shape}", "H x W x 3 uint8 RGB")
    return out


def _nuclear_weight(purple: np.ndarray) -> np.ndarray:
    """0 outside the nucleus, 1 inside: purple relative to half its 99th percentile, clipped."""
    thr = 0.5 * float(np.percentile(purple, 99.0))
    return np.clip(purple / thr, 0.0, 1.0) if thr > 0 else np.zeros_like(purple)


def _cell_weight(nuclear: np.ndarray, radius_px: float) -> np.ndarray:
    """Soft mask of the white cell: the nucleus grown by ``radius_px`` (its cytoplasm), smoothed."""
    grown = ndi.maximum_filter(nuclear, size=max(1, round(radius_px))) if radius_px >= 1 else nuclear
    return np.clip(ndi.gaussian_filter(grown.astype(np.float32), max(radius_px / 4.0, 0.5)), 0.0, 1.0)


def _stain_levels(ab: np.ndarray) -> tuple[float, float, float, float]:
    """Nuclear purple, nuclear azure, eosin and nuclear eosin levels of one image's absorber maps.

    Nuclear levels are medians over the nucleus (pixels above half the 99th percentile of
    purple), not a peak percentile: a textured nucleus (PBC's chromatin speckle) and a uniform
    one (BCCD's) of the same mean stain then read alike, and the azure level measured over the
    same pixels carries the nucleus's hue. The eosin level is the median over eosin-stained
    pixels, mostly red cells; the nuclear eosin level (eosin bound to chromatin: the
    Romanowsky effect, which differs between stain protocols far more than the red cells' eosin)
    is its median over the nucleus.
    """
    p = ab[_PURPLE]
    nuc = p > 0.5 * float(np.percentile(p, 99.0))
    if nuc.sum() < 50:
        return float("nan"), float("nan"), float("nan"), float("nan")
    e = ab[_EOSIN]
    stained = e[(e > 0.05) & ~nuc]
    eos = float(np.median(stained)) if stained.size > 50 else float("nan")
    return float(np.median(p[nuc])), float(np.median(ab[_AZURE][nuc])), eos, float(np.median(e[nuc]))


def _blurred(ab: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px <= 0:
        return ab
    out = ab.copy()
    for k in (_PURPLE, _AZURE, _EOSIN):
        out[k] = ndi.gaussian_filter(ab[k], sigma_px)
    return out


def _nuclear_texture(ab: np.ndarray, px_per_um: float) -> float:
    """Chromatin texture of a nucleus: high-pass purple within the nucleus over its median level.

    The high pass is the purple map minus its 1 µm Gaussian blur, so it holds chromatin speckle,
    clumping and the dark rim a sharpening filter leaves at the nuclear edge (PBC's analyzer);
    dividing by the level makes it independent of stain strength.
    """
    p = ab[_PURPLE]
    nuc = p > 0.5 * float(np.percentile(p, 99.0))
    if nuc.sum() < 50:
        return float("nan")
    level = float(np.median(p[nuc]))
    if not level > 0:
        return float("nan")
    hp = p - ndi.gaussian_filter(p, px_per_um)
    return float(np.std(hp[nuc]) / level)


def _smoothed_nuclei(ab: np.ndarray, sigma_px: float, nuclear: np.ndarray | None = None) -> np.ndarray:
    """Purple and azure (the nucleus's absorbers) blurred by ``sigma_px``: smoother chromatin.

    With ``nuclear`` (a 0-1 nucleus weight), eosin is blurred as much inside the nucleus and kept
    outside: chromatin clumps unmix partly as eosin, and left sharp they would show as orange
    dots in a smoothed nucleus, while the red cells' rims must stay as sharp as the target's.
    """
    if sigma_px <= 0:
        return ab
    out = ab.copy()
    for k in (_PURPLE, _AZURE):
        out[k] = ndi.gaussian_filter(ab[k], sigma_px)
    if nuclear is not None:
        out[_EOSIN] = nuclear * ndi.gaussian_filter(ab[_EOSIN], sigma_px) + (1.0 - nuclear) * ab[_EOSIN]
    return out


def _sigma_matching(curve: np.ndarray, target: float) -> float:
    """The smallest sigma of :data:`_SIGMA_GRID_UM` whose measure is at or below ``target``.

    ``curve`` falls with sigma; the largest sigma if none is at or below, 0 when either side could
    not be measured.
    """
    if not (np.isfinite(target) and np.isfinite(curve[0])):
        return 0.0
    below = np.nonzero(curve <= target * (1.0 + 1e-9))[0]
    return float(_SIGMA_GRID_UM[below[0]]) if below.size else float(_SIGMA_GRID_UM[-1])


def _sharpness(eosin: np.ndarray) -> float:
    """Mean red-cell edge gradient of an eosin map normalised by its own red-cell level (1/px).

    Red cells are the resolution target every smear image holds: uniform discs with a sharp rim,
    the same in any laboratory, where a nucleus's texture differs with the stain (BCCD's nuclei
    show little chromatin detail however sharp the optics). Normalising by the level makes the
    measure independent of how strongly the image is stained, so two scanners differ in it only
    through their resolution (and noise, kept small by the light pre-smoothing).
    """
    level = float(np.percentile(eosin, 90.0))
    if not level > 0.05:
        return float("nan")
    e = ndi.gaussian_filter(eosin / level, 0.7)
    g = np.hypot(ndi.sobel(e, 0), ndi.sobel(e, 1)) / 8.0
    mask = (e > 0.25) & (e < 0.75)  # cell rims, not the flat body or the glass
    return float(g[mask].mean()) if mask.sum() > 50 else float("nan")


class TargetStyle:
    """Fit on source (training) and target (deployment) images; re-image source crops as the target.

    Parameters
    ----------
    level_spread
        Factor on the target's fitted between-image spread of stain levels (log-normal draws).
    blur_range
        Range of factors on the fitted blur, drawn uniformly per call.
    texture_range
        Range of factors on the fitted nuclear smoothing, drawn uniformly per call.
    cell_radius_um
        How far around a nucleus the white cell's cytoplasm and granules reach (their eosin is
        kept; outside, red-cell eosin is rescaled).
    max_images
        Images per set used to fit (subsampled with ``seed``).
    fit_pixels
        Pixels pooled to fit each stain basis.

    Attributes
    ----------
    source_, target_
        The two fitted :class:`~hemotwin.twin.reimage.StainBasis`.
    purple_ratio_, azure_ratio_, nuclear_eosin_ratio_, eosin_ratio_
        Target / source median stain levels (nucleus purple, nucleus azure, chromatin-bound eosin,
        red-cell eosin).
    purple_log_sd_, eosin_log_sd_
        Between-image spread (standard deviation of the log level) of the target.
    blur_um_
        Gaussian sigma (µm) that matches the source's sharpness to the target's.
    nuclear_smoothing_um_
        Gaussian sigma (µm) on the nucleus's absorbers that matches the source's chromatin texture
        to the target's (after the blur).
    """

    def __init__(self, *, level_spread: float = 1.0, blur_range: tuple[float, float] = (0.0, 1.0),
                 cell_radius_um: float = 4.0, max_images: int = 64, fit_pixels: int = 200_000,
                 texture_range: tuple[float, float] = (0.5, 1.25)) -> None:
        if not (0.0 <= level_spread <= 3.0):
            raise InputError("TargetStyle.level_spread", level_spread, "a factor in [0, 3]")
        lo, hi = (float(v) for v in blur_range)
        if not (0.0 <= lo <= hi <= 3.0):
            raise InputError("TargetStyle.blur_range", blur_range, "factors 0 <= low <= high <= 3")
        if not (0.0 <= cell_radius_um <= 20.0):
            raise InputError("TargetStyle.cell_radius_um", cell_radius_um, "a radius in µm, in [0, 20]")
        self.level_spread = float(level_spread)
        self.blur_range = (lo, hi)
        tlo, thi = (float(v) for v in texture_range)
        if not (0.0 <= tlo <= thi <= 3.0):
            raise InputError("TargetStyle.texture_range", texture_range, "factors 0 <= low <= high <= 3")
        self.texture_range = (tlo, thi)
        self.cell_radius_um = float(cell_radius_um)
        self.max_images = int(max_images)
        self.fit_pixels = int(fit_pixels)
        self.source_: StainBasis | None = None
        self.target_: StainBasis | None = None
        self.purple_ratio_ = self.azure_ratio_ = self.eosin_ratio_ = self.nuclear_eosin_ratio_ = float("nan")
        self.purple_log_sd_ = self.eosin_log_sd_ = 0.0
        self.blur_um_ = self.nuclear_smoothing_um_ = 0.0
        self.backgrounds_: np.ndarray | None = None
        self.report_: dict = {}

    def _fit_basis(self, images: list[np.ndarray], seed: int) -> StainBasis:
        # The scanner's own white point first: the twin's default is the fallback for crops
        # without glass, and a dimmer lamp (BCCD's glass is 20 % darker than PBC's) would
        # otherwise be read as a uniform stain over the whole image.
        basis = StainBasis()
        bgs = np.array([estimate_background(im, gamma=basis.gamma) for im in images])
        basis.set_background(np.median(bgs, axis=0))
        return basis.fit(images, max_pixels=self.fit_pixels, seed=seed)

    # -- estimator API ----------------------------------------------------------------------------
    def fit(self, source_images: Sequence[np.ndarray], target_images: Sequence[np.ndarray], *,
            source_um_per_px: float, target_um_per_px: float, seed: int = 0) -> TargetStyle:
        """Learn both scanners from unlabelled images of each (a few dozen are enough)."""
        rng = np.random.default_rng(seed)
        sets = {}
        for name, imgs in (("source_images", source_images), ("target_images", target_images)):
            ims = _images(imgs, name)
            if len(ims) > self.max_images:
                ims = [ims[i] for i in sorted(rng.choice(len(ims), self.max_images, replace=False))]
            sets[name] = ims
        for name, um in (("source_um_per_px", source_um_per_px), ("target_um_per_px", target_um_per_px)):
            if not (isinstance(um, (int, float, np.floating)) and 0.0 < float(um) <= 50.0):
                raise InputError(name, um, "a pixel size in µm, in (0, 50]")
        self.source_ = self._fit_basis(sets["source_images"], seed)
        self.target_ = self._fit_basis(sets["target_images"], seed)
        src = [self.source_.transform(im, um_per_px=source_um_per_px).absorbers for im in sets["source_images"]]
        tgt = [self.target_.transform(im, um_per_px=target_um_per_px).absorbers for im in sets["target_images"]]
        # Per-image glass (the lamp varies between fields), as the unmixing itself reads it.
        self.backgrounds_ = np.array([estimate_background(im, gamma=self.target_.gamma,
                                                          reference=self.target_.background_)
                                      for im in sets["target_images"]])
        # Resolution first: blur the source's eosin maps until their sharpness (per µm) matches
        # the target's. Levels are compared after that blur, because blur lowers the peaks a
        # percentile reads (0.3 µm of blur took a fifth off the 99th percentile of twin nuclei).
        t_per_um = float(np.nanmedian([_sharpness(ab[_EOSIN]) for ab in tgt])) / float(target_um_per_px)
        curve = []
        for sigma_um in _SIGMA_GRID_UM:
            s_px = sigma_um / float(source_um_per_px)
            vals = [_sharpness(ndi.gaussian_filter(ab[_EOSIN], s_px) if s_px > 0 else ab[_EOSIN]) for ab in src]
            curve.append(float(np.nanmedian(vals)) / float(source_um_per_px))
        curve = np.array(curve)
        # Too few red-cell rims on one side to compare: no blur assumed.
        self.blur_um_ = _sigma_matching(curve, t_per_um)
        s_px = self.blur_um_ / float(source_um_per_px)
        src = [_blurred(ab, s_px) for ab in src]
        # Chromatin texture next, on the nucleus's own absorbers: a target can show smooth nuclei
        # with sharp red-cell rims (BCCD: its stain or its focus on the cell's top, not its optics),
        # and a source's sharpening rim around each nucleus survives a paler stain as a dark ring.
        t_tex = float(np.nanmedian([_nuclear_texture(ab, 1.0 / float(target_um_per_px)) for ab in tgt]))
        tex = []
        for sigma_um in _SIGMA_GRID_UM:
            n_px = sigma_um / float(source_um_per_px)
            tex.append(float(np.nanmedian([_nuclear_texture(_smoothed_nuclei(ab, n_px), 1.0 / float(source_um_per_px))
                                            for ab in src])))
        tex = np.array(tex)
        self.nuclear_smoothing_um_ = _sigma_matching(tex, t_tex)
        n_px = self.nuclear_smoothing_um_ / float(source_um_per_px)
        src_levels = [_stain_levels(_smoothed_nuclei(ab, n_px)) for ab in src]
        tgt_levels = [_stain_levels(ab) for ab in tgt]

        def logs(rows, k):
            v = np.array([r[k] for r in rows], dtype=float)
            v = v[np.isfinite(v) & (v > 0)]
            if v.size < 3:
                raise InputError("TargetStyle.fit", f"{v.size} images with stained cells",
                                 "at least 3 stained images per scanner")
            return np.log(v)

        (sp, tp), (sa, ta), (se, te) = ((logs(src_levels, k), logs(tgt_levels, k)) for k in range(3))
        sn = np.array([r[3] for r in src_levels], dtype=float)
        tn = np.array([r[3] for r in tgt_levels], dtype=float)
        # Nuclear eosin can be near zero in one scanner: a ratio of medians with a floor, not logs.
        self.nuclear_eosin_ratio_ = float(np.nanmedian(tn) / max(float(np.nanmedian(sn)), 1e-3))
        self.purple_ratio_ = float(np.exp(np.median(tp) - np.median(sp)))
        # Azure separately: the nuclear hue (purple against azure) differs between stains.
        self.azure_ratio_ = float(np.exp(np.median(ta) - np.median(sa)))
        self.eosin_ratio_ = float(np.exp(np.median(te) - np.median(se)))
        # Robust spread (IQR / 1.349): a few blank or debris images must not widen it.
        self.purple_log_sd_ = float(np.subtract(*np.percentile(tp, [75, 25])) / 1.349)
        self.eosin_log_sd_ = float(np.subtract(*np.percentile(te, [75, 25])) / 1.349)
        self.report_ = {"n_source": len(sets["source_images"]), "n_target": len(sets["target_images"]),
                        "source_sharpness_per_um": float(curve[0]), "target_sharpness_per_um": float(t_per_um),
                        "source_nuclear_texture": float(tex[0]), "target_nuclear_texture": t_tex}
        return self

    def _check_fitted(self) -> None:
        if self.target_ is None or self.source_ is None:
            raise InputError("TargetStyle", "not fitted", "fit(source_images, target_images, ...) first")

    def __call__(self, rgb: np.ndarray, um_per_px: float, rng: np.random.Generator) -> np.ndarray:
        """One re-imaging of a source crop as the target scanner would show it (uint8, same grid)."""
        self._check_fitted()
        if not isinstance(rng, np.random.Generator):
            raise InputError("TargetStyle rng", type(rng).__name__, "a numpy.random.Generator")
        maps = self.source_.transform(rgb, um_per_px=um_per_px)
        ab = maps.absorbers.copy()
        sp = self.level_spread
        ab[_PURPLE] *= np.float32(self.purple_ratio_ * np.exp(rng.normal(0.0, sp * self.purple_log_sd_)))
        ab[_AZURE] *= np.float32(self.azure_ratio_ * np.exp(rng.normal(0.0, sp * self.purple_log_sd_)))
        # Eosin has three binding sites whose levels differ independently between protocols: red
        # cells (the fitted ratio), chromatin (the nuclear ratio) and white-cell granules and
        # cytoplasm (kept, jittered: a target's eosinophil granules stay vivid when its red
        # cells are pale — BCCD's — and no label-free measure separates them from the
        # cytoplasm of its most common cell).
        w = _nuclear_weight(maps.absorbers[_PURPLE])
        c = _cell_weight(w, self.cell_radius_um / float(um_per_px))
        e_rbc = self.eosin_ratio_ * np.exp(rng.normal(0.0, sp * self.eosin_log_sd_))
        e_cell = np.exp(rng.normal(0.0, sp * self.eosin_log_sd_))
        scale = e_rbc * (1.0 - c) + c * (e_cell * (1.0 - w) + self.nuclear_eosin_ratio_ * w)
        ab[_EOSIN] *= scale.astype(np.float32)
        ab = _blurred(ab, self.blur_um_ * rng.uniform(*self.blur_range) / float(um_per_px))
        n_px = self.nuclear_smoothing_um_ * rng.uniform(*self.texture_range) / float(um_per_px)
        if n_px > 0:  # the nucleus weight (w is already in [0, 1]) grown a pixel, so its edge is smoothed too
            ab = _smoothed_nuclei(ab, n_px, nuclear=ndi.maximum_filter(w, size=3).astype(np.float32))
        ab[_HB] = np.float32(self.target_.hb_per_eosin) * ab[_EOSIN]
        bg = self.backgrounds_[int(rng.integers(len(self.backgrounds_)))]
        return self.target_.inverse_transform(AbsorberMaps(ab, maps.instances, maps.compartments, maps.um_per_px),
                                             background=bg)

    run = __call__

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able state (stored with a model's provenance)."""
        self._check_fitted()
        return {"schema": _SCHEMA, "source": self.source_.to_dict(), "target": self.target_.to_dict(),
                "purple_ratio": self.purple_ratio_, "azure_ratio": self.azure_ratio_,
                "eosin_ratio": self.eosin_ratio_, "nuclear_eosin_ratio": self.nuclear_eosin_ratio_,
                "purple_log_sd": self.purple_log_sd_, "eosin_log_sd": self.eosin_log_sd_,
                "blur_um": self.blur_um_, "nuclear_smoothing_um": self.nuclear_smoothing_um_,
                "texture_range": list(self.texture_range), "backgrounds": self.backgrounds_.tolist(),
                "level_spread": self.level_spread, "blur_range": list(self.blur_range),
                "cell_radius_um": self.cell_radius_um, "report": self.report_}

    @classmethod
    def from_dict(cls, data: dict) -> TargetStyle:
        """A fitted style from :meth:`to_dict`'s output (as stored in model files)."""
        if not isinstance(data, dict) or data.get("schema") != _SCHEMA:
            raise InputError("target style", (data or {}).get("schema") if isinstance(data, dict) else data,
                             f"a dict with schema {_SCHEMA!r}")
        obj = cls(level_spread=float(data["level_spread"]), blur_range=tuple(data["blur_range"]),
                  cell_radius_um=float(data.get("cell_radius_um", 4.0)),
                  texture_range=tuple(data.get("texture_range", (0.5, 1.25))))
        obj.source_ = StainBasis.from_dict(data["source"])
        obj.target_ = StainBasis.from_dict(data["target"])
        for k in ("purple_ratio", "azure_ratio", "eosin_ratio", "nuclear_eosin_ratio", "purple_log_sd",
                  "eosin_log_sd", "blur_um"):
            setattr(obj, k + "_", float(data[k]))
        # Files written before the nuclear smoothing existed re-image without it.
        obj.nuclear_smoothing_um_ = float(data.get("nuclear_smoothing_um", 0.0))
        obj.backgrounds_ = np.asarray(data["backgrounds"], dtype=np.float64)
        obj.report_ = dict(data.get("report", {}))
        return obj

    def __repr__(self) -> str:
        if self.target_ is None:
            return "TargetStyle(unfitted)"
        return (f"TargetStyle(purple x{self.purple_ratio_:.2f}, azure x{self.azure_ratio_:.2f}, "
                f"eosin x{self.eosin_ratio_:.2f} (nuclear x{self.nuclear_eosin_ratio_:.2f}), "
                f"blur {self.blur_um_:.2f} µm, nuclear smoothing {self.nuclear_smoothing_um_:.2f} µm)")
