"""Training-time augmentations: the established colour baseline and the twin re-imaging.

The steps (:class:`ColorJitter`, :class:`Geometric`, :class:`BoxCrop`, :class:`ScaleJitter`) and
:func:`make_augment`, which joins them with the twin re-imaging into the training augmentation of
a mode, from the working geometry to the model's (:mod:`hemotwin.vision.geometry`).

``color`` is the standard anchor every comparison is run against (Tellez et al., 2019):
brightness/contrast/saturation/hue jitter, HED-space stain jitter, Gaussian blur and noise.
``twin`` re-images the crop through a randomised scanner profile with the optical twin
(:mod:`hemotwin.twin.reimage`): stain, optics, pixel size, camera and processing change
physically, not as independent colour knobs.

Every augmentation is a callable ``aug(rgb_uint8, rng) -> rgb_uint8`` that never modifies its
input and draws all randomness from the given :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.color import hed2rgb, hsv2rgb, rgb2hed, rgb2hsv

from hemotwin.errors import InputError
from hemotwin.vision.datasets import border_colour, to_canonical
from hemotwin.vision.geometry import Geometry, to_model_geometry, zoom_to_model

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _to_float(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {rgb.dtype} {rgb.shape}")
    return rgb.astype(np.float32) / 255.0


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass(frozen=True)
class ColorJitter:
    """The colour baseline: photometric and HED stain jitter, blur and noise.

    Defaults follow the "HSV + HED light/strong" recipes of Tellez et al. (2019), which are
    the best-performing colour augmentations reported for cross-site histopathology.
    """

    brightness: float = 0.15
    contrast: float = 0.2
    saturation: float = 0.25
    hue: float = 0.04
    hed_sigma: float = 0.05  #: multiplicative jitter of each HED channel (± 5 %)
    hed_bias: float = 0.02  #: additive jitter of each HED channel
    blur_p: float = 0.3
    blur_sigma_px: tuple[float, float] = (0.3, 1.2)
    noise_p: float = 0.3
    noise_sigma: tuple[float, float] = (0.0, 0.03)

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One jittered copy of ``rgb``."""
        img = _to_float(rgb)
        # HED stain jitter (the H&E basis is the field's standard baseline, not our physics).
        hed = rgb2hed(img)
        alpha = rng.uniform(1 - self.hed_sigma, 1 + self.hed_sigma, 3)
        beta = rng.uniform(-self.hed_bias, self.hed_bias, 3)
        img = hed2rgb(hed * alpha + beta).astype(np.float32)
        # HSV: hue rotation and saturation scale.
        hsv = rgb2hsv(np.clip(img, 0, 1))
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-self.hue, self.hue)) % 1.0
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - self.saturation, 1 + self.saturation), 0, 1)
        img = hsv2rgb(hsv).astype(np.float32)
        # Brightness and contrast.
        mean = img.mean()
        img = (img - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
        img = img * rng.uniform(1 - self.brightness, 1 + self.brightness)
        if rng.random() < self.blur_p:
            s = rng.uniform(*self.blur_sigma_px)
            img = ndi.gaussian_filter(img, sigma=(s, s, 0))
        if rng.random() < self.noise_p:
            img = img + rng.normal(0.0, rng.uniform(*self.noise_sigma), img.shape).astype(np.float32)
        return _to_uint8(img)


@dataclass(frozen=True)
class Geometric:
    """Flips and 90° rotations: a smear has no preferred orientation (applied in every mode)."""

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``rgb`` rotated by a multiple of 90° and perhaps mirrored."""
        out = np.rot90(rgb, k=int(rng.integers(4)))
        if rng.random() < 0.5:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)


@dataclass
class BoxCrop:
    """Keep only a box around the central white cell; fill the rest with the box border's colour.

    Crops handed to a classifier by an annotator or a detector are often tight boxes (BCCD's VOC
    boxes, most published white-cell sets), padded to the model's field with a flat colour by
    :func:`~hemotwin.vision.datasets.to_canonical`; training crops of an analyzer show the cell in
    its smear. This step shows the model the first kind too, so it cannot lean on the red cells
    around a white cell. The box is the detected cell's box (:func:`~hemotwin.vision.detect.detect_cells`)
    with an independent margin per side drawn from ``margin_um``: on BCCD the annotated boxes lie
    -0.2 / 0.65 / 1.7 µm (10th / 50th / 90th percentile) outside the detected cell's box.

    Detection runs once per distinct image (cached by content), so it must come before any step that
    changes the pixels (place it first).
    """

    um_per_px: float  #: pixel size of the images it is given
    p: float = 0.5
    margin_um: tuple[float, float] = (-0.3, 2.0)
    _boxes: dict = field(default_factory=dict, repr=False)

    def box_of(self, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        """The detected white cell's box nearest the image centre, or None."""
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16).digest()
        if key not in self._boxes:
            from hemotwin.vision.detect import detect_cells

            wbc = detect_cells(rgb, um_per_px=self.um_per_px).wbc
            cy, cx = (rgb.shape[0] - 1) / 2, (rgb.shape[1] - 1) / 2
            best = min(wbc, key=lambda w: (w.centroid[0] - cy) ** 2 + (w.centroid[1] - cx) ** 2, default=None)
            self._boxes[key] = None if best is None else best.bbox
        return self._boxes[key]

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``rgb`` cut to a box around its white cell (with probability ``p``)."""
        if rng.random() >= self.p:
            return rgb
        box = self.box_of(rgb)
        if box is None:
            return rgb
        m = np.rint(rng.uniform(*self.margin_um, 4) / self.um_per_px).astype(int)
        h, w = rgb.shape[:2]
        r0, c0 = max(0, box[0] - m[0]), max(0, box[1] - m[1])
        r1, c1 = min(h, box[2] + m[2]), min(w, box[3] + m[3])
        if r1 - r0 < 2 or c1 - c0 < 2:
            return rgb
        sub = rgb[r0:r1, c0:c1]
        out = np.empty_like(rgb)
        out[:] = border_colour(sub).astype(rgb.dtype)
        out[r0:r1, c0:c1] = sub
        return out


@dataclass(frozen=True)
class ScaleJitter:
    """Zoom about the centre by a log-uniform factor in ``[1 / max_factor, max_factor]``.

    Every image is brought to one physical pixel size before the model, but that size is itself an
    estimate (a manifest value, or the red-cell ruler, whose two readings of BCCD differ by 20 %);
    this teaches the model that the same cell may arrive some 10-15 % larger or smaller.

    The zoom resamples the image on its own grid (area-averaging when shrinking, bilinear when
    enlarging, :func:`~hemotwin.vision.datasets.to_canonical`) and the training pipeline then
    resamples it to the model's grid (in training, both as one composed map:
    :func:`~hemotwin.vision.geometry.zoom_to_model`, with the factor from :meth:`draw`). A zoom
    folded into the single resampling to the model grid, or one bilinear pass, scored 3-4 points
    lower on BCCD than this version's first six runs, and the folded one 1.2 points lower than
    this version re-run (docs/benchmarks.md): the second resampling's slight softening may be
    part of what the zoom teaches.
    """

    max_factor: float = 1.15

    def draw(self, rng: np.random.Generator) -> float:
        """One zoom factor (> 1 magnifies)."""
        lim = math.log(self.max_factor)
        return math.exp(rng.uniform(-lim, lim))

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``rgb`` zoomed by a factor from :meth:`draw`."""
        return self.zoom(rgb, self.draw(rng))

    @staticmethod
    def zoom(rgb: np.ndarray, factor: float) -> np.ndarray:
        """``rgb`` (square) magnified by ``factor`` about its centre, on its own grid."""
        h, w = rgb.shape[:2]
        if h != w:
            raise ValueError(f"ScaleJitter expects a square image, got {h} x {w}")
        return to_canonical(rgb, um_per_px=factor, canonical_um_per_px=1.0, size=h)


@dataclass(frozen=True)
class Compose:
    """Apply augmentations in order."""

    steps: tuple[Augment, ...]

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``rgb`` through every step in order."""
        for step in self.steps:
            rgb = step(rgb, rng)
        return rgb


def identity(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """No augmentation."""
    return rgb


# ------------------------------------------------------------------------ the training augmentation

#: Memory each augmentation process may spend remembering the unmixing of training crops
#: (:meth:`~hemotwin.twin.reimage.StainBasis.memoize`): ~0.8 MB a working crop, so a 1,300-crop set.
UNMIX_CACHE_BYTES = 1 << 30

#: Scanner presets the twin augmentation re-images through (one drawn per sample).
TWIN_PROFILES: tuple[str, ...] = ("analyzer-100x", "wsi-40x", "wsi-20x", "phone-40x")


@dataclass(frozen=True)
class TargetReimaging:
    """Re-imaging training crops as one target scanner (the ``twin`` mode's optional part).

    Attributes
    ----------
    style
        A fitted :class:`~hemotwin.twin.target_style.TargetStyle`.
    p
        Fraction of the samples re-imaged as the target (0.3 measured best of 0.3 / 0.5 / 0.7 on
        BCCD, one seed each).
    jitter
        Follow that re-imaging with the colour jitter too. Without it, and with early stopping on
        validation cells rendered as the target, the model read the twin's rendering of the target
        better (PBC test cells so rendered: 94 / 76 % against 84 / 74 %) but real BCCD cells worse
        (-4 and -8 points, seeds 0 / 1; docs/benchmarks.md), so the default keeps the jitter.
    """

    style: Any
    p: float = 0.3
    jitter: bool = True


@dataclass
class _ToModel:
    geometry: Geometry
    zoom: ScaleJitter | None = None

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.zoom is None:
            return to_model_geometry(rgb, self.geometry)
        return zoom_to_model(rgb, self.geometry, self.zoom.draw(rng))


@dataclass
class _TwinReimage:
    """Re-image through a random scanner preset's neighbour; sometimes keep the original scanner."""

    reimagers: list
    geometry: Geometry
    p_reimage: float
    target_style: Any = None  #: a fitted TargetStyle, or None
    p_target: float = 0.0
    zoom: ScaleJitter | None = None
    jitter: Augment | None = None  #: the colour jitter that follows (the baseline's)
    jitter_target: bool = True  #: also jitter the samples re-imaged as the target

    def __post_init__(self) -> None:
        self._to_model = _ToModel(self.geometry, self.zoom)

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random()
        work_um = self.geometry.work_um_per_px
        to_model = self._to_model
        if self.target_style is not None and u < self.p_target:
            # The target style works on the stored crop (so its unmixing is remembered across
            # epochs) and the zoom follows: both act locally, so the order barely matters.
            out = to_model(self.target_style(rgb, work_um, rng), rng)
            return self.jitter(out, rng) if self.jitter is not None and self.jitter_target else out
        if u >= self.p_target + (1.0 - self.p_target) * self.p_reimage:
            out = to_model(rgb, rng)
        else:
            r = self.reimagers[int(rng.integers(len(self.reimagers)))]
            # The preset re-imaging resamples to the model grid itself: the zoom rides on that resampling.
            out = r(rgb, work_um, rng) if self.zoom is None else r(rgb, work_um, rng, zoom=self.zoom.draw(rng))
        return self.jitter(out, rng) if self.jitter is not None else out


def make_augment(mode: str, geometry: Geometry, *, basis: Any = None, strength: float = 0.3, p_reimage: float = 0.5,
                 profiles: Sequence[str] = TWIN_PROFILES, pool_size: int = 12, seed: int = 0,
                 target: TargetReimaging | None = None, box_crop: float = 0.0,
                 scale_jitter: float = 1.0) -> Augment:
    """The training augmentation of ``mode`` (``none``, ``color``, ``twin``, ``wide``): working -> model geometry.

    Parameters
    ----------
    mode
        ``none`` (flips and rotations), ``color`` (and the colour jitter), ``twin`` (and the twin
        re-imaging through neighbours of the four presets before the jitter) or ``wide`` (the same
        through the wide scanner space, :class:`~hemotwin.twin.reimage.SpaceReImager`).
    geometry
        The model geometry; the augmentation takes working-geometry crops.
    basis
        ``twin`` needs a fitted :class:`~hemotwin.twin.reimage.StainBasis` (the training images'
        stain vectors).
    strength, p_reimage, profiles, pool_size, seed
        With probability ``p_reimage`` a call re-images the crop through a randomised neighbour
        (``strength``) of one of ``profiles`` (``pool_size`` neighbours each, drawn from ``seed``),
        then applies the ``color`` jitter. The defaults (0.3, half the samples) measured best on
        BCCD (docs/benchmarks.md); strength 0.8 on 80 % of the samples lowered accuracy.
    target
        With ``twin``: a fraction ``target.p`` of the calls re-image the crop as that target
        scanner instead, and the rest follow the rule above.
    box_crop
        In every mode, the fraction of samples cut to a box around the white cell first
        (:class:`BoxCrop`).
    scale_jitter
        Above 1, every sample is then zoomed by up to that factor (:class:`ScaleJitter`, after any
        re-imaging as the target).

    Returns
    -------
    Augment

    Raises
    ------
    InputError
        An unknown ``mode``, or ``twin`` without a ``basis``.

    Notes
    -----
    The twin's unmixing of each training crop is remembered across epochs
    (:data:`UNMIX_CACHE_BYTES` per process), which does not change any result.
    """
    first: tuple = (BoxCrop(um_per_px=geometry.work_um_per_px, p=box_crop),) if box_crop > 0 else ()
    zoom = ScaleJitter(scale_jitter) if scale_jitter > 1.0 else None
    to_model = _ToModel(geometry, zoom)
    # Flips and rotations act on the model-sized image, after any re-imaging: the twin's optics are
    # isotropic, so the order does not matter physically, and the re-imaging then always sees the
    # stored orientation of a training image (which its unmixing cache relies on).
    if mode == "none":
        return Compose((*first, to_model, Geometric()))
    if mode == "color":
        return Compose((*first, to_model, Geometric(), ColorJitter()))
    if mode in ("twin", "wide"):
        if basis is None:
            raise InputError("augment", mode, "a fitted StainBasis (basis=...)")
        from hemotwin.twin.reimage import ReImager, SpaceReImager

        # Copies that remember their unmixings; the caller's objects are left as they were.
        basis = copy.copy(basis).memoize(UNMIX_CACHE_BYTES)
        style = None
        if target is not None:
            style = copy.copy(target.style)
            style.source_ = copy.copy(style.source_).memoize(UNMIX_CACHE_BYTES)
        if mode == "twin":
            reimagers = [ReImager(basis, profile=p, strength=strength, pool_size=pool_size, pool_seed=seed + k,
                                  out_um_per_px=geometry.um_per_px, out_size=geometry.input_size)
                         for k, p in enumerate(profiles)]
        else:
            # One engine over the whole scanner space, with as many cached scanners as the presets' pools.
            reimagers = [SpaceReImager(basis, pool_size=min(60, pool_size * len(profiles)), pool_seed=seed,
                                       out_um_per_px=geometry.um_per_px, out_size=geometry.input_size)]
        # The physical re-imaging is followed by the same colour jitter as the baseline, so the
        # comparison measures what the twin adds on top of it.
        # (The jitter is pixel-wise or isotropic, so it commutes with the flips that follow.)
        return Compose((*first, _TwinReimage(reimagers, geometry, p_reimage, style,
                                             target.p if target is not None else 0.0, zoom,
                                             jitter=ColorJitter(),
                                             jitter_target=target.jitter if target is not None else True),
                        Geometric()))
    raise InputError("augment", mode, "one of none, color, twin, wide")
