"""Rasterisation of a :class:`Specimen` into :class:`AbsorberMaps` on a physical µm grid.

Every object is drawn only inside its own bounding box, from signed-distance-like fields
evaluated analytically at pixel centres: an edge is a linear ramp of width
``max(EDGE_UM, um_per_px)`` centred on the outline, which is both the physical soft edge at fine
sampling and a pixel-coverage anti-aliasing at coarse sampling. Masks are the ramp > 0.5, i.e.
exactly the geometric outline, so mask areas in µm² do not depend on the pixel size.

Amounts add (Beer–Lambert: optical densities of stacked objects add); masks are "topmost wins"
in draw order.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from hemotwin.errors import InputError

from . import _texture
from .maps import ABSORBERS, AbsorberMaps, Compartment
from .morphology import (
    GranulePopulation,
    Harmonic,
    NucleusShape,
    PlateletMorphology,
    RBCMorphology,
    WBCMorphology,
)
from .specimen import ObjectRecord, Specimen

_FLAT_OVER_GAUSS = (0.5 * math.pi * math.sqrt(math.pi / math.log(2.0))) / (
    2 * math.pi / 1.1774**2)
EDGE_UM = 0.15  #: physical width of the soft edge of every outline (µm)
_F32 = np.float32
_PURPLE, _AZURE, _EOSIN, _HB = (ABSORBERS.index(n) for n in
                                ("purple", "azure_b", "eosin", "hemoglobin"))


class _Canvas:
    """The arrays being drawn plus the pixel-centre coordinates (µm) of the grid."""

    def __init__(self, shape: tuple[int, int], um_per_px: float, plasma_eosin: float) -> None:
        h, w = shape
        self.px = um_per_px
        self.h, self.w = h, w
        self.ab = np.zeros((len(ABSORBERS), h, w), dtype=_F32)
        if plasma_eosin > 0:
            self.ab[_EOSIN].fill(plasma_eosin)
        self.inst = np.zeros((h, w), dtype=np.int32)
        self.comp = np.zeros((h, w), dtype=np.uint8)
        self.wbc_masks: dict[int, np.ndarray] = {}
        self.ys = (np.arange(h) + 0.5) * um_per_px  # float64 µm of pixel centres
        self.xs = (np.arange(w) + 0.5) * um_per_px
        self.edge = max(EDGE_UM, um_per_px)

    def box(self, cy: float, cx: float, ext_y: float, ext_x: float) -> tuple[int, int, int, int]:
        px = self.px
        i0 = max(0, math.floor((cy - ext_y) / px))
        i1 = min(self.h, math.ceil((cy + ext_y) / px) + 1)
        j0 = max(0, math.floor((cx - ext_x) / px))
        j1 = min(self.w, math.ceil((cx + ext_x) / px) + 1)
        return i0, i1, j0, j1


# --------------------------------------------------------------------------------------------
# Geometry helpers: all work on broadcastable arrays, so the same code evaluates a pixel box
# (dy of shape (n, 1), dx of shape (1, m)) or a set of points (dy, dx of shape (n,)).
# --------------------------------------------------------------------------------------------


def _rot(theta_deg: float) -> tuple[float, float]:
    t = math.radians(theta_deg)
    return math.cos(t), math.sin(t)


def _local_to_global(pos: tuple[float, float], c: float, s: float) -> tuple[float, float]:
    """Rotate a local (y, x) offset by the object rotation (c, s) into a global offset."""
    y, x = pos
    return x * s + y * c, x * c - y * s


def _ellipse_uv(dy: np.ndarray, dx: np.ndarray, c: float, s: float, ry: float,
                rx: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ellipse coordinates (u along the local x axis / rx, v along local y / ry)."""
    u = dx * _F32(c / rx) + dy * _F32(s / rx)
    v = dy * _F32(c / ry) - dx * _F32(s / ry)
    return u, v


def _radial(u: np.ndarray, v: np.ndarray, harmonics: tuple[Harmonic, ...]) -> np.ndarray:
    """Normalised radius rho / h(theta): < 1 inside an outline r(theta) = 1 + sum a cos(k t + p).

    cos(k theta), sin(k theta) come from the Chebyshev recursion on u/rho, v/rho: no atan2,
    which would cost more than everything else in the box.
    """
    rho = u * u
    rho += v * v
    np.sqrt(rho, out=rho)
    if not harmonics:
        return rho
    # In-place arithmetic on a few preallocated buffers: on boxes of ~50k pixels every fresh
    # temporary is a large allocation, and allocator churn costs more than the arithmetic.
    inv = rho + _F32(1e-6)
    np.reciprocal(inv, out=inv)
    c1 = u * inv
    s1 = np.multiply(v, inv, out=inv)
    amps = {h.k: h for h in harmonics}
    kmax = max(amps)
    h_sum = np.ones_like(rho)
    ck, sk = c1.copy(), s1.copy()
    t1 = np.empty_like(rho)
    t2 = np.empty_like(rho)
    for k in range(1, kmax + 1):
        if k > 1:
            # cos/sin((k)θ) from ((k-1)θ) and θ, in place.
            np.multiply(ck, s1, out=t1)
            np.multiply(ck, c1, out=ck)
            np.multiply(sk, s1, out=t2)
            ck -= t2
            np.multiply(sk, c1, out=sk)
            sk += t1
        if k in amps:
            hk = amps[k]
            p = math.radians(hk.phase_deg)
            np.multiply(ck, _F32(hk.amp * math.cos(p)), out=t1)
            h_sum += t1
            np.multiply(sk, _F32(hk.amp * math.sin(p)), out=t1)
            h_sum -= t1
    rho /= h_sum
    return rho


def _harm_max(harmonics: tuple[Harmonic, ...]) -> float:
    return 1.0 + sum(h.amp for h in harmonics)


def _ramp(sdf: np.ndarray, edge: float) -> np.ndarray:
    """Soft coverage 0..1 of a signed distance (µm, negative inside); 0.5 on the outline."""
    a = _F32(0.5) - sdf * _F32(1.0 / edge)
    np.clip(a, 0.0, 1.0, out=a)
    return a


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (a blended union of two distance fields)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(_F32(0.5) + _F32(0.5 / k) * (b - a), 0.0, 1.0)
    return b + h * (a - b) - _F32(k) * h * (_F32(1.0) - h)


def _segment_sdf(dy: np.ndarray, dx: np.ndarray, a: tuple[float, float], b: tuple[float, float],
                 r: float) -> np.ndarray:
    """Distance to a capsule of radius r around segment a-b (global µm offsets)."""
    bay, bax = b[0] - a[0], b[1] - a[1]
    pay, pax = dy - _F32(a[0]), dx - _F32(a[1])
    inv = 1.0 / max(bay * bay + bax * bax, 1e-12)
    t = pay * _F32(bay * inv) + pax * _F32(bax * inv)
    np.clip(t, 0.0, 1.0, out=t)
    ey = pay - t * _F32(bay)
    ex = pax - t * _F32(bax)
    return np.sqrt(ey * ey + ex * ex) - _F32(r)


def _polygon_sdf(dy: np.ndarray, dx: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Exact signed distance (µm, negative inside) to the closed polygon with vertices (py, px).

    Distance to the nearest edge, signed by the even-odd crossing rule: on this field the linear
    ramp of :func:`_ramp` has its 0.5 level on the outline and an area-correct soft edge, like
    the analytic shapes.
    """
    dy, dx = np.broadcast_arrays(dy, dx)
    d2 = np.full(dy.shape, np.inf, dtype=_F32)
    inside = np.zeros(dy.shape, dtype=bool)
    n = len(py)
    for i in range(n):
        ay, ax = float(py[i]), float(px[i])
        by, bx = float(py[(i + 1) % n]), float(px[(i + 1) % n])
        ey, ex = by - ay, bx - ax
        wy, wx = dy - _F32(ay), dx - _F32(ax)
        t = wy * _F32(ey / max(ey * ey + ex * ex, 1e-12)) + wx * _F32(ex / max(ey * ey + ex * ex, 1e-12))
        np.clip(t, 0.0, 1.0, out=t)
        qy, qx = wy - t * _F32(ey), wx - t * _F32(ex)
        np.minimum(d2, qy * qy + qx * qx, out=d2)
        if ey != 0.0:
            # Crossing of the ray from the point towards +x with this edge.
            inside ^= ((ay > dy) != (by > dy)) & (dx < _F32(ax) + wy * _F32(ex / ey))
    d = np.sqrt(d2)
    return np.where(inside, -d, d)


def _nucleus_sdf(n: NucleusShape, dy: np.ndarray, dx: np.ndarray, c: float,
                 s: float) -> np.ndarray:
    """Signed distance (µm, approx.) of a nucleus.

    ``dy``, ``dx`` are global offsets from the cell centre, ``(c, s)`` the cell rotation.
    """
    ncy, ncx = _local_to_global(n.center_um, c, s)
    cn, sn = _rot(math.degrees(math.atan2(s, c)) + n.angle_deg)
    ddy, ddx = dy - _F32(ncy), dx - _F32(ncx)
    ry, rx = n.radii_um
    if n.kind in ("segmented", "bilobed"):
        d = None
        centres = []
        for lobe in n.lobes:
            ly, lx = _local_to_global(lobe.center_um, cn, sn)
            centres.append((ly, lx))
            cl, sl = _rot(math.degrees(math.atan2(sn, cn)) + lobe.angle_deg)
            u, v = _ellipse_uv(ddy - _F32(ly), ddx - _F32(lx), cl, sl, *lobe.radii_um)
            if lobe.outline:
                dl = (_radial(u, v, lobe.outline) - _F32(1.0)) * _F32(min(lobe.radii_um))
            else:
                dl = (np.sqrt(u * u + v * v) - _F32(1.0)) * _F32(min(lobe.radii_um))
            d = dl if d is None else _smin(d, dl, n.smooth_um)
        assert d is not None
        if n.smooth_um <= 0:
            for a, b in itertools.pairwise(centres):
                d = np.minimum(d, _segment_sdf(ddy, ddx, a, b, n.filament_width_um / 2))
        return d
    if n.kind == "contour":
        pts = np.asarray(n.contour_um, dtype=float)
        # Nucleus frame -> global offsets from the nucleus centre (as _local_to_global does).
        py = pts[:, 1] * sn + pts[:, 0] * cn
        px = pts[:, 1] * cn - pts[:, 0] * sn
        return _polygon_sdf(ddy, ddx, py, px)
    if n.kind == "band":
        half_w, arc_r = ry, rx
        u, v = _ellipse_uv(ddy, ddx, cn, sn, 1.0, 1.0)
        au = np.abs(u)
        ap = math.radians(n.band_aperture_deg)
        sa, ca = math.sin(ap), math.cos(ap)
        # Inigo Quilez's sdArc: arc centred on +v, spanning +-aperture from it.
        cap = np.sqrt((au - _F32(sa * arc_r)) ** 2 + (v - _F32(ca * arc_r)) ** 2)
        ring = np.abs(np.sqrt(au * au + v * v) - _F32(arc_r))
        return np.where(_F32(ca) * au > _F32(sa) * v, cap, ring) - _F32(half_w)
    # ellipse-based kinds
    u, v = _ellipse_uv(ddy, ddx, cn, sn, ry, rx)
    d = (_radial(u, v, n.outline) - _F32(1.0)) * _F32(math.sqrt(ry * rx))
    if n.kind in ("kidney", "folded") and n.indentation > 0:
        r_notch = 0.7 * ry
        # notch circle on the +x side, positioned so it removes `indentation` of the width
        cxn = rx + r_notch - n.indentation * 2 * rx
        gy, gx = _local_to_global((0.0, cxn), cn, sn)
        dn = _F32(r_notch) - np.sqrt((ddy - _F32(gy)) ** 2 + (ddx - _F32(gx)) ** 2)
        d = np.maximum(d, dn)
    return d


def _nucleus_extent(n: NucleusShape) -> float:
    """Radius around the cell centre that surely contains the nucleus (µm)."""
    off = math.hypot(*n.center_um)
    if n.kind in ("segmented", "bilobed"):
        r = max(math.hypot(*lb.center_um) + max(lb.radii_um) * _harm_max(lb.outline)
                for lb in n.lobes)
        return off + r + n.smooth_um
    if n.kind == "contour":
        return off + max(math.hypot(y, x) for y, x in n.contour_um)
    if n.kind == "band":
        return off + n.radii_um[1] + n.radii_um[0]
    return off + max(n.radii_um) * _harm_max(n.outline)


# --------------------------------------------------------------------------------------------
# Granules
# --------------------------------------------------------------------------------------------


def _stamp(shape: tuple[int, int], y0: float, x0: float, px: float, gy: np.ndarray,
           gx: np.ndarray, sigma: np.ndarray, amp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accumulate granule blobs on a box; returns (coverage, amount) maps.

    Each blob is evaluated exactly at the pixel centres of a small (2r+1)^2 footprint and all
    blobs are summed with ONE ``np.bincount`` (no per-granule Python loop, no full-box filter).
    Blobs resolved by >= 3 pixels across get a flat-topped, round profile
    exp(-ln2 (d/h)^4) with h = 1.1774 sigma (half maximum on the disc of diameter FWHM), which
    reads as a discrete bead; smaller ones are Gaussians widened by the pixel's box variance
    (px^2/12) with the peak lowered to conserve the integral, so granules keep their mass at any
    pixel size. ``coverage`` peaks at ~1 per granule; its > 0.5 region is the granule disc.
    """
    ny, nx = shape
    fwhm_px = 2.3548 * float(np.median(sigma)) / px
    flat = fwhm_px >= 3.0
    s_eff = sigma if flat else np.sqrt(sigma * sigma + px * px / 12.0)
    r = math.ceil((1.6 if flat else 2.5) * float(s_eff.max()) / px)
    offs = np.arange(-r, r + 1)
    rows = np.rint((gy - y0) / px).astype(np.intp)[:, None] + offs
    cols = np.rint((gx - x0) / px).astype(np.intp)[:, None] + offs
    ddy = rows * px + y0 - gy[:, None]
    ddx = cols * px + x0 - gx[:, None]
    vy = (rows >= 0) & (rows < ny)
    vx = (cols >= 0) & (cols < nx)
    if flat:
        inv_h2 = (1.0 / (1.1774 * s_eff) ** 2)[:, None, None]
        t = (ddy * ddy)[:, :, None] * inv_h2 + (ddx * ddx)[:, None, :] * inv_h2
        w = np.exp(-math.log(2.0) * t * t) * (vy[:, :, None] & vx[:, None, :])
    else:
        peak = (sigma / s_eff) ** 2
        inv2 = (-0.5 / (s_eff * s_eff))[:, None]
        wy = np.exp(ddy * ddy * inv2) * vy * peak[:, None]
        wx = np.exp(ddx * ddx * inv2) * vx
        w = wy[:, :, None] * wx[:, None, :]
    np.clip(rows, 0, ny - 1, out=rows)
    np.clip(cols, 0, nx - 1, out=cols)
    idx = ((rows * nx)[:, :, None] + cols[:, None, :]).ravel()
    cov = np.bincount(idx, w.ravel(), minlength=ny * nx)
    if not flat:
        # Same mass as the flat-topped bead of equal FWHM (integrals 3.344 h^2 vs 4.533 h^2),
        # so an object's stain does not jump where the profile switches with the pixel size.
        amp = amp * _FLAT_OVER_GAUSS
    amt = np.bincount(idx, (w * amp[:, None, None]).ravel(), minlength=ny * nx)
    return (cov.reshape(ny, nx).astype(_F32), amt.reshape(ny, nx).astype(_F32))


def _granule_points(m: WBCMorphology, g: GranulePopulation, index: int, c: float,
                    s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Granule centres (global µm offsets from the cell centre), sigma (µm) and amplitude."""
    rng = np.random.default_rng([m.texture_seed, 1000 + index])
    R = m.diameter_um / 2
    el = math.sqrt(m.elongation)
    rx, ry = R * el, R / el
    sigma0 = g.size_um / 2.3548  # FWHM -> sigma
    margin = 0.5 * g.size_um
    if g.packing == "packed":
        sp = g.size_um * 1.08  # beads just touching, as in eosinophils
        ext = max(rx, ry) * _harm_max(m.outline)
        ys = np.arange(-ext, ext + sp, sp * math.sqrt(3) / 2)
        yy = np.repeat(ys, int(2 * ext / sp) + 2)
        xx = np.tile(np.arange(-ext, ext + sp, sp)[: int(2 * ext / sp) + 2], len(ys))
        xx = xx + (np.round(yy / (sp * math.sqrt(3) / 2)) % 2) * sp / 2
        jit = rng.normal(0, 0.12 * sp, size=(2, yy.size))
        ly, lx = yy + jit[0], xx + jit[1]
        keep = rng.random(yy.size) < g.fill
        ly, lx = ly[keep], lx[keep]
    else:
        n_cand = max(4 * g.count, 16)
        rad = np.sqrt(rng.random(n_cand))
        phi = rng.random(n_cand) * (2 * np.pi)
        ly, lx = rad * np.sin(phi) * ry, rad * np.cos(phi) * rx
    # local -> global offsets
    gy = lx * s + ly * c
    gx = lx * c - ly * s
    u, v = _ellipse_uv(gy.astype(_F32), gx.astype(_F32), c, s, ry, rx)
    inside = _radial(u, v, m.outline) < 1.0 - margin / R
    if g.region in ("cytoplasm", "nucleus_near"):
        dn = _nucleus_sdf(m.nucleus, gy.astype(_F32), gx.astype(_F32), c, s)
        inside &= dn > margin * 0.5
    for vac in m.vacuoles:
        vy, vx = _local_to_global(vac.center_um, c, s)
        inside &= np.hypot(gy - vy, gx - vx) > vac.radius_um
    gy, gx = gy[inside], gx[inside]
    if g.packing == "random":
        gy, gx = gy[: g.count], gx[: g.count]
    n = gy.size
    sig = sigma0 * np.clip(1 + g.size_jitter * rng.standard_normal(n), 0.5, 1.6)
    amp = np.clip(1 + 0.15 * rng.standard_normal(n), 0.6, 1.4)
    return gy, gx, sig, amp


# --------------------------------------------------------------------------------------------
# Object painters
# --------------------------------------------------------------------------------------------


def _sub(dy: np.ndarray, dx: np.ndarray, cy: float, cx: float, r: float,
         px: float) -> tuple[slice, slice]:
    """Slices of a box (rows dy, cols dx, µm offsets) covering the disc (cy, cx, r)."""
    a0 = max(0, math.floor((cy - r - float(dy[0, 0])) / px))
    a1 = min(dy.shape[0], math.ceil((cy + r - float(dy[0, 0])) / px) + 1)
    b0 = max(0, math.floor((cx - r - float(dx[0, 0])) / px))
    b1 = min(dx.shape[1], math.ceil((cx + r - float(dx[0, 0])) / px) + 1)
    return slice(a0, max(a0, a1)), slice(b0, max(b0, b1))


def _set_masks(cv: _Canvas, box: tuple[int, int, int, int], mask: np.ndarray, obj_id: int,
               comp: Compartment) -> None:
    i0, i1, j0, j1 = box
    np.copyto(cv.inst[i0:i1, j0:j1], np.int32(obj_id), where=mask)
    np.copyto(cv.comp[i0:i1, j0:j1], np.uint8(comp), where=mask)


def _draw_rbc(cv: _Canvas, rec: ObjectRecord, m: RBCMorphology) -> None:
    cy, cx = rec.center_um
    R = m.diameter_um / 2
    el = math.sqrt(m.elongation)
    rx, ry = R * el, R / el
    ext = rx + m.tail_length_um + cv.edge
    box = cv.box(cy, cx, ext, ext)
    i0, i1, j0, j1 = box
    if i0 >= i1 or j0 >= j1:
        return
    c, s = _rot(rec.rotation_deg)
    dy = (cv.ys[i0:i1] - cy).astype(_F32)[:, None]
    dx = (cv.xs[j0:j1] - cx).astype(_F32)[None, :]
    u, v = _ellipse_uv(dy, dx, c, s, ry, rx)
    q2 = u * u + v * v
    plain = m.subtype not in ("schistocyte", "dacrocyte")
    if plain:
        alpha = _F32(0.5 + R / cv.edge) - np.sqrt(q2) * _F32(R / cv.edge)
        np.clip(alpha, 0.0, 1.0, out=alpha)
    else:
        sdf = (np.sqrt(q2) - _F32(1.0)) * _F32(R)
        if m.subtype == "schistocyte":
            ca, sa = _rot(rec.rotation_deg + m.cut_angle_deg)
            sdf = np.maximum(sdf, dx * _F32(ca) + dy * _F32(sa) - _F32(m.cut_offset * R))
            if m.bite is not None:
                by, bx = _local_to_global(m.bite.center_um, c, s)
                sdf = np.maximum(sdf, _F32(m.bite.radius_um)
                                 - np.sqrt((dy - _F32(by)) ** 2 + (dx - _F32(bx)) ** 2))
        else:  # dacrocyte: body + a tapering tail along local +x (uneven capsule, I. Quilez)
            r1, r2, h = 0.55 * R, m.tail_width_um / 2, R + m.tail_length_um
            uu, vv = u * _F32(rx), np.abs(v * _F32(ry))  # back to µm in the local frame
            b = (r1 - r2) / h
            a = math.sqrt(max(1 - b * b, 1e-9))
            k = vv * _F32(-b) + uu * _F32(a)
            d_body = np.sqrt(uu * uu + vv * vv) - _F32(r1)
            d_tip = np.sqrt((uu - _F32(h)) ** 2 + vv * vv) - _F32(r2)
            d_mid = vv * _F32(a) + uu * _F32(b) - _F32(r1)
            cone = np.where(k < 0, d_body, np.where(k > a * h, d_tip, d_mid))
            sdf = _smin(sdf, cone, 0.8)
        alpha = _ramp(sdf, cv.edge)
    # Biconcave thickness profile of a dried red cell: flat thick rim, a pallor that is ~flat
    # in the centre and falls off over ~1/3 of the diameter (a 4th-order super-Gaussian in rho),
    # and a gentle roll-off towards the edge.
    prof = alpha
    if m.pallor_depth > 0 and m.pallor_fraction > 0:
        t = q2 * _F32(1.0 / m.pallor_fraction**2)
        dip = np.exp(t * t * _F32(-math.log(2.0)))
        prof = alpha * (_F32(1.0) - _F32(m.pallor_depth) * dip)
        if m.target_spot > 0:  # target cell: a dense spot inside the pallor ring
            spot = np.exp(q2 * _F32(-1.0 / (2 * (0.33 * m.pallor_fraction) ** 2)))
            prof += alpha * _F32(m.target_spot) * spot
    if m.rim_rolloff > 0:
        q4 = q2 * q2
        prof = prof * (_F32(1.0) - _F32(m.rim_rolloff) * np.minimum(q4 * q4, _F32(1.0)))
    ab = cv.ab[:, i0:i1, j0:j1]
    ab[_EOSIN] += _F32(m.eosin) * prof
    ab[_HB] += _F32(m.hemoglobin) * prof
    if m.azure_b > 0:
        ab[_AZURE] += _F32(m.azure_b) * prof
    _set_masks(cv, box, alpha > 0.5, rec.id, Compartment.RED_CELL)


def _draw_platelet(cv: _Canvas, rec: ObjectRecord, m: PlateletMorphology) -> None:
    cy, cx = rec.center_um
    R = m.diameter_um / 2
    el = math.sqrt(m.elongation)
    rx, ry = R * el, R / el
    ext = rx * _harm_max(m.outline) + cv.edge + m.granule_size_um
    box = cv.box(cy, cx, ext, ext)
    i0, i1, j0, j1 = box
    if i0 >= i1 or j0 >= j1:
        return
    c, s = _rot(rec.rotation_deg)
    dy = (cv.ys[i0:i1] - cy).astype(_F32)[:, None]
    dx = (cv.xs[j0:j1] - cx).astype(_F32)[None, :]
    u, v = _ellipse_uv(dy, dx, c, s, ry, rx)
    rho = _radial(u, v, m.outline)
    alpha = _ramp((rho - _F32(1.0)) * _F32(R), cv.edge)
    ab = cv.ab[:, i0:i1, j0:j1]
    ab[_AZURE] += _F32(m.hyalomere_azure_b) * alpha
    ab[_PURPLE] += _F32(m.hyalomere_purple) * alpha
    if m.granule_count:
        # Granulomere: granules clustered in the central part of the platelet.
        rng = np.random.default_rng([m.texture_seed, 7])
        rad = 0.6 * np.sqrt(rng.random(m.granule_count))
        phi = rng.random(m.granule_count) * 2 * np.pi
        ly, lx = rad * np.sin(phi) * ry, rad * np.cos(phi) * rx
        gy, gx = cy + lx * s + ly * c, cx + lx * c - ly * s
        sig = np.full(gy.size, m.granule_size_um / 2.3548)
        amp = np.clip(1 + 0.25 * rng.standard_normal(gy.size), 0.4, 1.6)
        _, g = _stamp((i1 - i0, j1 - j0), cv.ys[i0], cv.xs[j0], cv.px, gy, gx, sig, amp)
        ab[_PURPLE] += _F32(m.granule_purple) * g
    _set_masks(cv, box, alpha > 0.5, rec.id, Compartment.PLATELET)


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over ``k x k`` blocks of the last two axes (their sizes are multiples of ``k``)."""
    if k == 1:
        return a
    *lead, h, w = a.shape
    return a.reshape(*lead, h // k, k, w // k, k).mean(axis=(-3, -1))


def _draw_library_wbc(cv: _Canvas, rec: ObjectRecord, m: WBCMorphology) -> None:
    """Draw a real cell of a cell library: its stored maps and masks, rotated, mirrored, resampled.

    Area-correct: target pixels are sampled ``k x k`` times (``k`` = target / stored pixel size,
    rounded up) by bilinear interpolation of the stored maps and averaged, so amounts (areal
    densities) keep their mass on any grid; finer grids interpolate. Masks go through the same
    path as coverages and are cut at 0.5.
    """
    # Imported here: the library module builds on this package.
    from scipy.ndimage import map_coordinates

    from hemotwin.twin.cell_library import resolve_library_cell

    ref = m.library_cell
    assert ref is not None
    e = resolve_library_cell(ref)
    cy, cx = rec.center_um
    ext = ref.radius_um + 2.0 * max(cv.px, e.um_per_px)
    box = cv.box(cy, cx, ext, ext)
    i0, i1, j0, j1 = box
    if i0 >= i1 or j0 >= j1:
        return
    k = max(1, math.ceil(cv.px / e.um_per_px - 1e-6))
    sub = (np.arange(k) + 0.5) / k - 0.5  # sub-sample offsets within a pixel, in pixels
    ys = ((cv.ys[i0:i1, None] + sub[None, :] * cv.px).ravel() - cy)[:, None]
    xs = ((cv.xs[j0:j1, None] + sub[None, :] * cv.px).ravel() - cx)[None, :]
    c, s = _rot(rec.rotation_deg)
    # Global offset -> the record's local frame (inverse of _local_to_global), then the mirror.
    ly = ys * c - xs * s
    lx = ys * s + xs * c
    if ref.flip:
        lx = -lx
    rows = e.center_px[0] + ly / e.um_per_px
    cols = e.center_px[1] + lx / e.um_per_px
    coords = np.stack([rows, cols])
    layers = np.concatenate([e.absorbers, np.stack([e.cell, e.nucleus, e.granules]).astype(_F32)])
    out = np.stack([map_coordinates(layer, coords, order=1, mode="constant", cval=0.0, prefilter=False)
                    for layer in layers]).astype(_F32)
    out = _block_mean(out, k)
    n_ab = len(ABSORBERS)
    cv.ab[:, i0:i1, j0:j1] += out[:n_ab]
    cell, nucleus, granules = (out[n_ab + q] > 0.5 for q in range(3))
    cell |= nucleus
    i_sl = (slice(i0, i1), slice(j0, j1))
    np.copyto(cv.inst[i_sl], np.int32(rec.id), where=cell)
    comp = np.where(nucleus, np.uint8(Compartment.NUCLEUS), np.uint8(Compartment.CYTOPLASM))
    comp[granules] = np.uint8(Compartment.GRANULE)
    np.copyto(cv.comp[i_sl], comp, where=cell)
    _store_wbc_mask(cv, box, cell, rec.id)


def _draw_wbc(cv: _Canvas, rec: ObjectRecord, m: WBCMorphology) -> None:
    if m.library_cell is not None:
        _draw_library_wbc(cv, rec, m)
        return
    cy, cx = rec.center_um
    R = m.diameter_um / 2
    el = math.sqrt(m.elongation)
    rx, ry = R * el, R / el
    smudge = m.nucleus.kind == "smudge"
    ext = max(rx * _harm_max(m.outline), _nucleus_extent(m.nucleus)) + cv.edge + 0.6
    box = cv.box(cy, cx, ext, ext)
    i0, i1, j0, j1 = box
    if i0 >= i1 or j0 >= j1:
        return
    shape = (i1 - i0, j1 - j0)
    c, s = _rot(rec.rotation_deg)
    ys_rel = cv.ys[i0:i1] - cy
    xs_rel = cv.xs[j0:j1] - cx
    dy = ys_rel.astype(_F32)[:, None]
    dx = xs_rel.astype(_F32)[None, :]
    edge = cv.edge
    ab = cv.ab[:, i0:i1, j0:j1]

    # --- nucleus on its own sub-box --------------------------------------------------------
    n = m.nucleus
    ncy, ncx = _local_to_global(n.center_um, c, s)
    n_ext = _nucleus_extent(n) - math.hypot(*n.center_um) + edge
    nb = cv.box(cy + ncy, cx + ncx, n_ext, n_ext)
    a0, a1 = max(nb[0], i0) - i0, min(nb[1], i1) - i0
    b0, b1 = max(nb[2], j0) - j0, min(nb[3], j1) - j0
    nuc_alpha = np.zeros(shape, dtype=_F32)
    if a1 > a0 and b1 > b0:
        ndy, ndx = dy[a0:a1], dx[:, b0:b1]
        sdf_n = _nucleus_sdf(n, ndy, ndx, c, s)
        na = _ramp(sdf_n, edge)
        ch = m.chromatin
        if smudge:
            # Smudge cell: chromatin smeared into streaks along the smear direction, ridged
            # noise gives the strand ("basket") look; the outline is frayed by the same noise.
            # Streaks run along the image x axis: the smear (spreading) direction is the same
            # for every cell of a slide, and separable sampling is several times cheaper.
            t = _texture.sample("band", m.texture_seed, ys_rel[a0:a1], xs_rel[b0:b1],
                                scale_um=ch.scale_um, um_per_px=cv.px, stretch_x=3.0)
            t2 = _texture.sample("band", m.texture_seed + 5, ys_rel[a0:a1], xs_rel[b0:b1],
                                 scale_um=ch.scale_um * 1.5, um_per_px=cv.px)
            ridge = _F32(1.0) - np.abs(t * _F32(0.6) + t2 * _F32(0.6))
            low = _texture.sample("low", m.texture_seed + 1, ys_rel[a0:a1], xs_rel[b0:b1],
                                  scale_um=3.0, um_per_px=cv.px)
            # Frayed, soft outline: the smear fades out rather than ending at a membrane.
            na = _ramp(sdf_n - low * _F32(0.8) + np.abs(t2) * _F32(0.3), max(edge, 0.5))
            mod = np.exp(ridge * _F32(ch.contrast * 1.5) - _F32(0.5 * ch.contrast))
        else:
            kind = "band" if ch.spectral_slope is None else _texture.power_kind(ch.spectral_slope)
            t = _texture.sample(kind, m.texture_seed, ys_rel[a0:a1], xs_rel[b0:b1],
                                scale_um=ch.scale_um, um_per_px=cv.px)
            # Lognormal modulation, mean 1: clumps darken, parachromatin stays pale.
            var = _texture.variance(kind, ch.scale_um, cv.px)
            mod = np.exp(t * _F32(ch.contrast) - _F32(0.5 * ch.contrast**2 * var))
        for nu in m.nucleoli:
            # Nucleoli: paler, slightly bluish round spots in the nucleus frame.
            cnn, snn = _rot(rec.rotation_deg + n.angle_deg)
            oy, ox = _local_to_global(nu.center_um, cnn, snn)
            gy, gx = ncy + oy, ncx + ox
            e = max(edge, 0.25)
            sy, sx = _sub(ndy, ndx, gy, gx, nu.radius_um + e, cv.px)
            dn = np.sqrt((ndy[sy] - _F32(gy)) ** 2 + (ndx[:, sx] - _F32(gx)) ** 2)
            spot = _ramp(dn - _F32(nu.radius_um), e)
            mod[sy, sx] *= _F32(1.0) - _F32(m.nucleolus_contrast) * spot
            ab[_AZURE, a0:a1, b0:b1][sy, sx] += _F32(0.12) * spot * na[sy, sx]
        nuc_alpha[a0:a1, b0:b1] = na
        nw = na * mod
        ab[_PURPLE, a0:a1, b0:b1] += _F32(ch.density) * nw
        if ch.azure_b > 0:
            ab[_AZURE, a0:a1, b0:b1] += _F32(ch.azure_b) * nw
        if ch.eosin > 0:
            ab[_EOSIN, a0:a1, b0:b1] += _F32(ch.eosin) * nw

    if smudge:
        mask = nuc_alpha > 0.5
        _set_masks(cv, box, mask, rec.id, Compartment.NUCLEUS)
        _store_wbc_mask(cv, box, mask, rec.id)
        return

    # --- cell outline and cytoplasm -------------------------------------------------------
    u, v = _ellipse_uv(dy, dx, c, s, ry, rx)
    rho = _radial(u, v, m.outline)
    cell_alpha = _ramp((rho - _F32(1.0)) * _F32(R), edge)
    # The nucleus always lies inside the cell, whatever the sampled geometry.
    np.maximum(cell_alpha, nuc_alpha, out=cell_alpha)
    cw = cell_alpha * (_F32(1.0) - nuc_alpha)
    cy_st = m.cytoplasm
    if cy_st.texture_contrast > 0 and cy_st.texture_slope is not None:
        kind = _texture.power_kind(cy_st.texture_slope)
        t = _texture.sample(kind, m.texture_seed + 3, ys_rel, xs_rel,
                            scale_um=cy_st.texture_scale_um, um_per_px=cv.px)
        # Lognormal, mean 1: a measured coefficient of variation up to ~1 stays non-negative.
        var = _texture.variance(kind, cy_st.texture_scale_um, cv.px)
        k = cy_st.texture_contrast
        cw *= np.exp(t * _F32(k) - _F32(0.5 * k * k * var))
    elif cy_st.texture_contrast > 0:
        t = _texture.sample("low", m.texture_seed + 3, ys_rel, xs_rel,
                            scale_um=cy_st.texture_scale_um, um_per_px=cv.px)
        cw *= _F32(1.0) + _F32(cy_st.texture_contrast) * t
    if cy_st.edge_gradient > 0:
        g = cy_st.edge_gradient
        cw *= (_F32(1.0) + _F32(g) * np.minimum(rho * rho, _F32(1.0))) * _F32(1.0 / (1 + g / 2))
    if m.hof is not None and m.hof_depth > 0:
        hy, hx = _local_to_global(m.hof.center_um, c, s)
        e = max(edge, 0.8)
        sy, sx = _sub(dy, dx, hy, hx, m.hof.radius_um + e, cv.px)
        dh = np.sqrt((dy[sy] - _F32(hy)) ** 2 + (dx[:, sx] - _F32(hx)) ** 2)
        cw[sy, sx] *= _F32(1.0) - _F32(m.hof_depth) * _ramp(dh - _F32(m.hof.radius_um), e)
    for vac in m.vacuoles:
        vy, vx = _local_to_global(vac.center_um, c, s)
        sy, sx = _sub(dy, dx, vy, vx, vac.radius_um + edge, cv.px)
        dv = np.sqrt((dy[sy] - _F32(vy)) ** 2 + (dx[:, sx] - _F32(vx)) ** 2)
        cw[sy, sx] *= _F32(1.0) - _F32(0.85) * _ramp(dv - _F32(vac.radius_um), edge)
    for k, amount in ((_PURPLE, cy_st.purple), (_AZURE, cy_st.azure_b), (_EOSIN, cy_st.eosin),
                      (_HB, cy_st.hemoglobin)):
        if amount > 0:
            ab[k] += _F32(amount) * cw

    # --- granules and Auer rods -----------------------------------------------------------
    gran_cov = None
    for gi, g in enumerate(m.granules):
        gy, gx, sig, amp = _granule_points(m, g, gi, c, s)
        if gy.size == 0:
            continue
        cov, amt = _stamp(shape, float(ys_rel[0]), float(xs_rel[0]), cv.px, gy, gx, sig, amp)
        for k, amount in ((_PURPLE, g.purple), (_AZURE, g.azure_b), (_EOSIN, g.eosin)):
            if amount > 0:
                ab[k] += _F32(amount) * amt
        gran_cov = cov if gran_cov is None else gran_cov + cov
    for rod in m.auer_rods:
        ry0, rx0 = _local_to_global(rod.center_um, c, s)
        ca, sa = _rot(rec.rotation_deg + rod.angle_deg)
        hl = rod.length_um / 2 - rod.width_um / 2
        a = (ry0 - sa * hl, rx0 - ca * hl)
        b = (ry0 + sa * hl, rx0 + ca * hl)
        sy, sx = _sub(dy, dx, ry0, rx0, rod.length_um / 2 + edge, cv.px)
        ra = _ramp(_segment_sdf(dy[sy], dx[:, sx], a, b, rod.width_um / 2), edge)
        ra *= cell_alpha[sy, sx]
        ab[_PURPLE][sy, sx] += _F32(rod.purple) * ra
        ab[_EOSIN][sy, sx] += _F32(0.15 * rod.purple) * ra  # red-purple hue
        if gran_cov is None:
            gran_cov = np.zeros(shape, dtype=_F32)
        gran_cov[sy, sx] += ra

    cell_mask = cell_alpha > 0.5
    i_sl = (slice(i0, i1), slice(j0, j1))
    np.copyto(cv.inst[i_sl], np.int32(rec.id), where=cell_mask)
    comp = np.where(nuc_alpha > 0.5, np.uint8(Compartment.NUCLEUS),
                    np.uint8(Compartment.CYTOPLASM))
    if gran_cov is not None:
        comp[gran_cov > 0.5] = np.uint8(Compartment.GRANULE)
    np.copyto(cv.comp[i_sl], comp, where=cell_mask)
    _store_wbc_mask(cv, box, cell_mask, rec.id)


def _store_wbc_mask(cv: _Canvas, box: tuple[int, int, int, int], mask: np.ndarray,
                    obj_id: int) -> None:
    i0, i1, j0, j1 = box
    full = np.zeros((cv.h, cv.w), dtype=bool)
    full[i0:i1, j0:j1] = mask
    cv.wbc_masks[obj_id] = full


def rasterize(specimen: Specimen, *, um_per_px: float,
              shape: tuple[int, int] | None = None) -> AbsorberMaps:
    """Draw a specimen as absorber maps and ground-truth masks on a µm grid.

    Parameters
    ----------
    specimen
        The specimen record (not modified).
    um_per_px
        Grid spacing in µm; pixel ``(i, j)`` has its centre at ``((i + .5), (j + .5)) * um_per_px``.
    shape
        ``(H, W)``; default ``round(height_um / um_per_px), round(width_um / um_per_px)``.

    Returns
    -------
    AbsorberMaps
        Amounts (``K x H x W`` float32), instance ids, compartments and full white-cell masks.

    Examples
    --------
    >>> from hemotwin.twin.specimen import make_cell_specimen, rasterize
    >>> maps = rasterize(make_cell_specimen("NGS", size_um=25.6, seed=1), um_per_px=0.1)
    >>> maps.shape
    (256, 256)
    """
    if not isinstance(specimen, Specimen):
        raise InputError("specimen", type(specimen).__name__, "a Specimen")
    try:
        px = float(um_per_px)
    except (TypeError, ValueError):
        raise InputError("um_per_px", um_per_px, "a number > 0") from None
    if not math.isfinite(px) or px <= 0:
        raise InputError("um_per_px", um_per_px, "a finite number > 0")
    if shape is None:
        shape = (max(1, round(specimen.height_um / px)), max(1, round(specimen.width_um / px)))
    else:
        if (len(shape) != 2 or any(not isinstance(d, (int, np.integer)) or d <= 0
                                   for d in shape)):
            raise InputError("shape", shape, "two positive integers (H, W)")
        shape = (int(shape[0]), int(shape[1]))
    cv = _Canvas(shape, px, specimen.plasma_eosin)
    for rec in specimen.objects:
        m = rec.morphology
        if isinstance(m, RBCMorphology):
            _draw_rbc(cv, rec, m)
        elif isinstance(m, WBCMorphology):
            _draw_wbc(cv, rec, m)
        else:
            _draw_platelet(cv, rec, m)
    return AbsorberMaps(absorbers=cv.ab, instances=cv.inst, compartments=cv.comp,
                        um_per_px=px, wbc_masks=cv.wbc_masks)
