"""Classification of detected white cells with a vision model, with per-cell confidence and referral.

Each detection is cropped square around its centroid at the field's pixel size
(:func:`hemotwin.vision.detect.crop_cell`), brought to the model's pixel size and input size by
the vision layer's own resampler (:func:`hemotwin.vision.datasets.to_canonical`: area averaging
down, bilinear up), and scored by the model's inference engine (onnxruntime by default; torch stays
inside ``vision/``). A cell whose top probability is below the confidence threshold is **referred**
to the review list instead of being counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hemotwin.errors import InputError
from hemotwin.taxonomy import CLASS_CODES

__all__ = ["DEFAULT_CONFIDENCE", "NATIVE_VIEW_MAX_PX", "CellClassifier", "native_view", "thumbnail"]

#: Default review threshold on the top class probability. With the shipped model 0.1-1.2 % of the
#: detected twin cells fall below 0.5 (docs/diagnosis.md); they go to the review list.
DEFAULT_CONFIDENCE = 0.5
#: Largest side (px) of a cell's full view in the report. A crop of the model's 25 µm field is ~250 px at
#: 0.1 µm/px (oil objective), where nucleoli and Auer rods show; only finer scans (BCCD's 0.07 µm/px:
#: ~370 px) are scaled down, so a 200-cell report stays at a few MB.
NATIVE_VIEW_MAX_PX = 320
#: Crop side as a multiple of the model's field of view: a little wider, so the centre crop of the
#: resampler never pads.
CROP_MARGIN = 1.05


@dataclass
class CellClassifier:
    """A loaded model and its inference engine, ready to score detections.

    Use :meth:`open` rather than the constructor.

    Attributes
    ----------
    labels
        The model's labels (class codes), in output order.
    um_per_px, input_size
        The model's input geometry.
    path, sha256
        The model file and its checksum (recorded in reports; keys chain calibrations).
    """

    engine: object
    labels: list[str]
    um_per_px: float
    input_size: int
    path: Path
    sha256: str
    provenance: dict

    @classmethod
    def open(cls, model: str | Path | None = None, *, backend: str = "onnxruntime",
             num_threads: int | None = None) -> CellClassifier:
        """Load ``model`` (default: the shipped model) for cell classification.

        Raises
        ------
        InputError
            The model file is missing or unreadable, or its labels are not class codes (a coarse
            five-class model cannot call blasts, so it cannot produce this differential).
        """
        from hemotwin.io.provenance import file_sha256
        from hemotwin.vision.inference import open_engine

        loaded, engine = open_engine(model, backend=backend, num_threads=num_threads)
        labels = list(loaded.labels)
        bad = [lab for lab in labels if lab not in CLASS_CODES]
        if bad:
            raise InputError("model", str(loaded.path),
                             f"a model whose labels are class codes ({', '.join(CLASS_CODES)}); this one has "
                             f"{', '.join(bad)} (a coarse model cannot call blasts)")
        return cls(engine=engine, labels=labels, um_per_px=float(loaded.preprocessing.um_per_px),
                   input_size=int(loaded.preprocessing.input_size), path=Path(loaded.path),
                   sha256=file_sha256(loaded.path), provenance=loaded.provenance)

    @property
    def size_um(self) -> float:
        """Side of the field of view the model sees (µm)."""
        return self.um_per_px * self.input_size

    def crop(self, rgb: np.ndarray, det, *, um_per_px: float) -> np.ndarray:
        """The model-geometry crop (``S x S x 3`` uint8) of a detection in a field of ``um_per_px``."""
        from hemotwin.vision.datasets import to_canonical
        from hemotwin.vision.detect import crop_cell

        raw = crop_cell(rgb, det, size_um=self.size_um * CROP_MARGIN, um_per_px=um_per_px)
        out = to_canonical(raw, um_per_px=um_per_px, canonical_um_per_px=self.um_per_px, size=self.input_size)
        return np.asarray(out, dtype=np.uint8) if out.dtype == np.uint8 else np.clip(
            np.rint(out * 255), 0, 255).astype(np.uint8)

    def probabilities(self, crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """``N x n_labels`` probabilities of model-geometry crops."""
        from hemotwin.vision.inference import predict_arrays

        arr = np.stack(crops) if not isinstance(crops, np.ndarray) else crops
        if len(arr) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return predict_arrays(self.engine, arr)

    def calls(self, probs: np.ndarray, *, threshold: float = DEFAULT_CONFIDENCE
              ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Called label, confidence (top probability) and referral flag per row of ``probs``."""
        if not 0 <= threshold <= 1:
            raise InputError("min_confidence", threshold, "a probability in [0, 1]")
        p = np.asarray(probs)
        idx = p.argmax(1) if len(p) else np.zeros(0, int)
        conf = p.max(1) if len(p) else np.zeros(0)
        return [self.labels[i] for i in idx], conf, conf < threshold


def thumbnail(crop: np.ndarray, *, size: int = 64) -> bytes:
    """A small JPEG of a cell crop for the report gallery (base64-embedded by the report)."""
    import io

    from PIL import Image

    im = Image.fromarray(np.asarray(crop, dtype=np.uint8))
    im = im.resize((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def native_view(crop: np.ndarray, *, max_px: int = NATIVE_VIEW_MAX_PX, quality: int = 82) -> bytes:
    """A JPEG of a cell at its field's own resolution, for the report's full view of the cell.

    Parameters
    ----------
    crop
        ``H x W x 3`` uint8 crop cut from the field at its pixel size (not resampled to the model's).
    max_px
        Larger crops are scaled down to this side (none is scaled up: the report enlarges small ones
        on screen, pixel for pixel).
    quality
        JPEG quality (82: chromatin texture and granules survive; ~10 KB for 265 px, 14 KB as base64).

    Returns
    -------
    bytes
        The JPEG file's bytes.
    """
    import io

    from PIL import Image

    im = Image.fromarray(np.asarray(crop, dtype=np.uint8))
    if max(im.size) > max_px:
        scale = max_px / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
