"""Add a training stain reference (for harmonisation) to a model file saved before models carried one.

Models trained by ``hemotwin train`` now store it themselves. This script fits the reference on
the *real* images the model was trained on (read from ``--data``, brought to the model's input
geometry), keeps the weights, labels, preprocessing and original provenance, and records the
addition in the provenance.

Usage: ``.venv/bin/python scripts/add_stain_reference.py MODEL.hemo --data ../shared/data/pbc --overwrite``
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from hemotwin.vision.data import load_training_data
from hemotwin.vision.geometry import Geometry, prepare
from hemotwin.vision.modelfile import DEFAULT_OPSET, load_model, save_model
from hemotwin.vision.training import fit_stain_reference

_STANDARD = {"hemotwin_version", "command", "created_utc", "python", "numpy", "platform", "config", "seeds",
             "inputs", "research_use_only", "augmentation", "metrics"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True, action="append", help="training data folder (repeat)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true", help="replace the model file")
    args = ap.parse_args()
    loaded = load_model(args.model)
    prov = loaded.provenance
    geom = Geometry(loaded.preprocessing.um_per_px, loaded.preprocessing.input_size)
    datasets, _notes = load_training_data(args.data)
    work = [prepare(ds, geom, working=True).images for ds in datasets]
    import numpy as np

    ref = fit_stain_reference(np.concatenate(work), geom, seed=args.seed, log=print)
    if ref is None:
        raise SystemExit("no stain reference could be fitted from the data given")
    extra = {k: v for k, v in prov.items() if k not in _STANDARD}
    extra["stain_reference"] = ref
    extra["stain_reference_added"] = {"by": "scripts/add_stain_reference.py", "data": [str(d) for d in args.data],
                                      "seed": args.seed, "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                                      "original_created_utc": prov.get("created_utc"),
                                      "original_hemotwin_version": prov.get("hemotwin_version")}
    save_model(args.model, loaded.model, labels=loaded.labels, um_per_px=loaded.preprocessing.um_per_px,
               data_checksums=prov.get("inputs"), seed=(prov.get("seeds") or {}).get("seed"),
               augmentation=prov.get("augmentation"), metrics=prov.get("metrics"),
               training_config=(prov.get("config") or {}).get("training"), extra=extra,
               onnx_opset=DEFAULT_OPSET if loaded.onnx is not None else None, overwrite=args.overwrite)
    print(f"{args.model}: stain reference added (level {ref['level']:.3f}, {ref['n_fit_images']} images)")


if __name__ == "__main__":
    main()
