"""The ``.hemo`` model file: one zip holding everything needed to run and audit a classifier.

Layout (format version 1)
-------------------------
``manifest.json``
    ``format`` (``"hemotwin-model"``), ``format_version``, ``architecture`` (a
    :class:`~hemotwin.vision.models.ModelConfig`), ``labels`` (canonical class names, in output
    order), ``preprocessing`` (see :class:`Preprocessing`), ``provenance`` (package version, data
    checksums, seed, augmentation, metrics, training configuration) and the SHA-256 of each binary
    entry, so corruption is caught on load.
``weights.pt``
    The torch state dict (float32), read back with ``torch.load(weights_only=True)`` (no pickle code).
``model.onnx``
    The exported graph (uint8 NHWC in, probabilities out; see :mod:`hemotwin.vision.export`).

Entries are stored uncompressed: float weights barely compress, and the file stays mmap-friendly.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from hemotwin.errors import InputError, OutputExistsError
from hemotwin.io.provenance import provenance as make_provenance
from hemotwin.vision.export import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, export_onnx
from hemotwin.vision.models import DEFAULT_UM_PER_PX, HemoNet, ModelConfig

FORMAT_NAME = "hemotwin-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
ONNX = "model.onnx"
MAX_MODEL_BYTES = 10 * 1024 * 1024


class Preprocessing(BaseModel):
    """What an image must look like before it enters the model (the contract the caller fulfils).

    Parameters
    ----------
    um_per_px
        Canonical pixel size the image must be resampled to.
    input_size
        Square crop side in pixels, centred on the cell.
    channel_order
        Always ``"RGB"``.
    layout
        Always ``"NHWC"`` (batch, height, width, channel).
    dtype
        Always ``"uint8"`` (0-255); normalisation happens inside the model.
    mean, std
        Per-channel normalisation in [0, 1] units, applied inside the model (recorded for audit).
    """

    model_config = ConfigDict(extra="forbid")

    um_per_px: float = Field(gt=0)
    input_size: int = Field(ge=1)
    channel_order: Literal["RGB"] = "RGB"
    layout: Literal["NHWC"] = "NHWC"
    dtype: Literal["uint8"] = "uint8"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    onnx_input: str = INPUT_NAME
    onnx_output: str = OUTPUT_NAME


@dataclass
class LoadedModel:
    """A model file read back by :func:`load_model`.

    Attributes
    ----------
    model
        The torch network with its weights, in eval mode.
    config
        Its architecture.
    labels
        Class names in output order.
    preprocessing
        The input contract.
    provenance
        The provenance record saved with it.
    onnx
        The serialised ONNX graph (``None`` if the file was saved without one).
    format_version
        Format version of the file.
    path
        Where it was read from.
    """

    model: HemoNet
    config: ModelConfig
    labels: list[str]
    preprocessing: Preprocessing
    provenance: dict[str, Any]
    onnx: bytes | None
    format_version: int
    path: Path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    """The process's umask (it can only be read by setting it; the old value is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_model(path: str | Path, model: HemoNet, *, labels: Sequence[str], um_per_px: float = DEFAULT_UM_PER_PX,
               data_checksums: dict[str, str] | None = None, seed: int | None = None,
               augmentation: str | dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
               training_config: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
               onnx_opset: int | None = DEFAULT_OPSET, overwrite: bool = False) -> Path:
    """Write ``model`` and everything needed to use and audit it to a ``.hemo`` zip.

    Parameters
    ----------
    path
        Output file (``.hemo`` by convention). Written to a temporary file and renamed, so a crash
        never leaves a half-written model behind; its permissions are those of any new file (the
        umask's: readable by all under the usual 022).
    model
        The trained :class:`HemoNet` (not modified).
    labels
        Canonical class names in output order; one per output of the model.
    um_per_px
        Canonical pixel size the model was trained at.
    data_checksums
        Training/validation input name -> SHA-256 (e.g. of manifest files).
    seed
        Training seed.
    augmentation
        Description of the augmentation (name and parameters).
    metrics
        Validation/test metrics to record.
    training_config
        The training hyper-parameters (e.g. ``TrainConfig.model_dump()``).
    extra
        More JSON-ready provenance fields.
    onnx_opset
        Also store the graph exported to ONNX at this opset (needed by the default onnxruntime
        backend); None stores the weights only.
    overwrite
        Replace an existing file.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    labels = [str(lab) for lab in labels]
    cfg = model.config
    if len(labels) != cfg.n_classes:
        raise InputError("labels", len(labels), f"{cfg.n_classes} class names, one per model output")
    if len(set(labels)) != len(labels):
        raise InputError("labels", labels, "distinct class names")

    buf = io.BytesIO()
    # float32 and contiguous clones: small files and no storage shared with views.
    state = {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).cpu().contiguous().clone()
             for k, v in model.state_dict().items()}
    torch.save(state, buf)
    weights = buf.getvalue()
    onnx_bytes = export_onnx(model, opset=onnx_opset) if onnx_opset is not None else None

    prep = Preprocessing(um_per_px=um_per_px, input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    prov = make_provenance(
        command="vision.save_model",
        config={"architecture": cfg.model_dump(mode="json"), "training": training_config or {}},
        seeds={"seed": seed} if seed is not None else {},
        inputs=data_checksums or {},
        extra={"augmentation": augmentation, "metrics": metrics or {}, **(extra or {})},
    )
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": cfg.model_dump(mode="json"),
        "labels": labels,
        "preprocessing": prep.model_dump(mode="json"),
        "provenance": prov,
        "entries": {WEIGHTS: _sha256(weights), **({ONNX: _sha256(onnx_bytes)} if onnx_bytes else {})},
    }
    manifest_bytes = json.dumps(manifest, indent=2, default=str).encode()

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(MANIFEST, manifest_bytes)
            zf.writestr(WEIGHTS, weights)
            if onnx_bytes is not None:
                zf.writestr(ONNX, onnx_bytes)
        size = os.path.getsize(tmp)
        if size > MAX_MODEL_BYTES:
            raise InputError("model", f"{size / 1e6:.1f} MB", f"a model file <= {MAX_MODEL_BYTES / 2**20:.0f} MiB "
                             "(reduce widths/blocks)")
        # mkstemp makes its file private (0600); a model is for the whole group to use, so it gets the
        # mode any new file would (0644 under the usual umask 022).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_model(path: str | Path, *, labels: Sequence[str] | None = None, require_onnx: bool = False) -> LoadedModel:
    """Read a ``.hemo`` model file, checking its format, version, integrity and label set.

    Parameters
    ----------
    path
        The model file.
    labels
        If given, the label set (in output order) the caller requires; a model with any other label
        set is rejected (collapse to a coarser set is the caller's job, after prediction).
    require_onnx
        Reject a file saved without an ONNX graph.

    Returns
    -------
    LoadedModel

    Raises
    ------
    InputError
        Naming the file: not a zip / truncated, missing entries, an unknown format or a newer format
        version, a checksum mismatch, weights that do not fit the architecture, or a label mismatch.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(where, "no such file", "an existing .hemo model file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for required in (MANIFEST, WEIGHTS):
                if required not in names:
                    # A truncated file can still parse as a zip: the weights entry is itself a stored
                    # zip whose directory survives, so say "truncated?" rather than list its entries.
                    raise InputError(where, f"no '{required}' entry (truncated, or not a model file?)",
                                     f"a complete .hemo model file ({MANIFEST}, {WEIGHTS}, {ONNX})")
            manifest = json.loads(zf.read(MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
                raise InputError(where, manifest.get("format") if isinstance(manifest, dict) else manifest,
                                 f"format '{FORMAT_NAME}'")
            version = manifest.get("format_version")
            if not isinstance(version, int) or version < 1:
                raise InputError(where, version, "an integer format_version >= 1")
            if version > FORMAT_VERSION:
                raise InputError(where, f"format_version {version}",
                                 f"format_version <= {FORMAT_VERSION} (written by a newer hemotwin; upgrade)")
            weights = zf.read(WEIGHTS)
            onnx_bytes = zf.read(ONNX) if ONNX in names else None
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError, ValueError) as exc:
        # BadZipFile covers truncation; zlib/CRC errors surface as BadZipFile or OSError; a broken
        # manifest as a JSON ValueError.
        raise InputError(where, f"unreadable model file ({type(exc).__name__}: {exc})",
                         f"a complete .hemo model file ({MANIFEST}, {WEIGHTS}, {ONNX})") from exc

    entries = manifest.get("entries", {})
    for name, data in ((WEIGHTS, weights), (ONNX, onnx_bytes)):
        if data is not None and name in entries and entries[name] != _sha256(data):
            raise InputError(where, f"{name} checksum mismatch", "an uncorrupted model file")
    if require_onnx and onnx_bytes is None:
        raise InputError(where, "no model.onnx entry", "a model file with an exported ONNX graph")
    try:
        config = ModelConfig.model_validate(manifest["architecture"])
        prep = Preprocessing.model_validate(manifest["preprocessing"])
        model_labels = [str(x) for x in manifest["labels"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(where, f"bad manifest ({exc})", "architecture, preprocessing and labels") from exc
    if len(model_labels) != config.n_classes:
        raise InputError(where, f"{len(model_labels)} labels", f"{config.n_classes} (one per output)")
    if labels is not None and [str(x) for x in labels] != model_labels:
        raise InputError(where, f"label set {model_labels}", f"the required label set {list(labels)}")

    model = HemoNet(config)
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # pickle/zip/shape errors all mean the same to a user: bad weights
        raise InputError(where, f"weights do not load ({type(exc).__name__}: {str(exc)[:200]})",
                         "weights matching the stored architecture") from exc
    model.eval()
    return LoadedModel(model=model, config=config, labels=model_labels, preprocessing=prep,
                       provenance=manifest.get("provenance", {}), onnx=onnx_bytes, format_version=version,
                       path=path)
