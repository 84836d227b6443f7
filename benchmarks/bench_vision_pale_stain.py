"""``bench_vision.py`` with synthetic cells rendered under paler stains (a hypothesis test, prints JSON).

Hypothesis (docs/benchmarks.md, "Nucleus colour"): twin-trained models call real neutrophils
basophils because the twin's nuclei are near-black violet, so a real, paler nucleus resembles a
twin basophil granule cluster more than a twin nucleus. If so, synthetic cells rendered under a
wider range of stain strengths -- down to the pale BCCD look -- should restore BCCD neutrophil
recall in the ``twin+synth`` arm (0.06-0.17 before). The patch multiplies the stain strength of
every ``randomize`` neighbour by a factor drawn uniformly from ``--pale LO,HI`` (default 0.4,1.0)
in this process and its forked rendering workers; the package is not modified.

Usage: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_vision_pale_stain.py [--pale 0.4,1.0]
[bench_vision args]`` (default ``--modes twin+synth --synth-per-class 150``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


import hemotwin.twin.datasets as datasets
import hemotwin.twin.profiles as profiles


def patch(lo: float, hi: float) -> None:
    """Wrap ``randomize`` so every neighbour's stain strength is scaled by U(lo, hi)."""
    original = profiles.randomize

    def paler(profile, rng, strength=0.5):
        q = original(profile, rng, strength)
        st = q.stain.model_copy(update={"strength": q.stain.strength * float(rng.uniform(lo, hi))})
        return q.model_copy(update={"stain": st})

    profiles.randomize = paler
    if getattr(datasets, "randomize", None) is original:
        datasets.randomize = paler


if __name__ == "__main__":
    args = sys.argv[1:]
    lo, hi = 0.4, 1.0
    if args[:1] == ["--pale"]:
        lo, hi = (float(v) for v in args[1].split(","))
        args = args[2:]
    if not 0.0 < lo <= hi <= 3.0:
        raise SystemExit(f"--pale {lo},{hi}: expected 0 < LO <= HI <= 3")
    patch(lo, hi)
    import bench_vision

    bench_vision.main(args or ["--modes", "twin+synth", "--synth-per-class", "150"])
