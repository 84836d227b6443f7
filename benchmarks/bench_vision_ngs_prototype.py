"""``bench_vision.py`` with a prototype twin neutrophil (thicker, touching lobes), patched in memory.

Tests whether the twin's thin, separated neutrophil lobes are why models trained with synthetic
cells call real BCCD neutrophils basophils (docs/benchmarks.md: they are not the main cause). The
patch changes two constants of ``twin.specimen.morphology._nucleus_for`` for ``NGS`` only -- lobe
radius factor 1.45 -> 2.0 and lobe gap (0.5, 1.1) -> (-0.2, 0.4) µm -- in this process and its forked
rendering workers; the package is not modified.

``--ngs-chromatin CONTRAST,SCALE`` (first argument, optional) also replaces the NGS chromatin
texture (default contrast 0.52, clump scale 1.0 µm; e.g. ``0.2,1.5`` for dense, nearly uniform lobes).

Usage: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_vision_ngs_prototype.py [--ngs-chromatin C,S]
[bench_vision args]`` (default ``--modes twin+synth --synth-per-class 150``).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hemotwin.twin.specimen.morphology as morph


def patch() -> None:
    """Swap in the prototype NGS lobe geometry (raises if the source no longer has the constants)."""
    # The prototype rewrites the twin's private lobe geometry in place, on purpose: it measures a
    # change before it is made in the twin itself.
    src = inspect.getsource(morph._nucleus_for)  # noqa: SLF001
    new = src.replace('{"NGS": 1.45, "EOS": 2.0, "BAS": 1.8}', '{"NGS": 2.0, "EOS": 2.0, "BAS": 1.8}')
    new = new.replace('{"NGS": (0.5, 1.1),', '{"NGS": (-0.2, 0.4),')
    if new.count("2.0, \"EOS\"") != 1 or "(-0.2, 0.4)" not in new:
        raise RuntimeError("morphology._nucleus_for changed: update the prototype patch")
    exec(compile(new, morph.__file__, "exec"), morph.__dict__)


if __name__ == "__main__":
    patch()
    args = sys.argv[1:]
    if args[:1] == ["--ngs-chromatin"]:
        contrast, scale = (float(v) for v in args[1].split(","))
        density = morph.WBC_PRIORS["NGS"]["chrom"][0]
        morph.WBC_PRIORS["NGS"]["chrom"] = (density, contrast, scale)
        args = args[2:]
    import bench_vision

    bench_vision.main(args or ["--modes", "twin+synth", "--synth-per-class", "150"])
