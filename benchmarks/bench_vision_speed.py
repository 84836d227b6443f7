"""Speed of the white-cell classifier on this machine: inference and training, side by side in one run.

Measured with the default network (:class:`hemotwin.vision.models.ModelConfig` defaults, 15 classes,
GroupNorm, 112 px at 0.225 µm/px):

- **inference** cells/s through onnxruntime and torch at batch sizes 1 / 32 / 128 (median of repeats,
  intra-op threads = the cores this process may use); BatchNorm and LayerNorm variants at batch 128
  for the normalisation comparison (BatchNorm is what an inference-optimised conv net would use);
- **training** images/s of :func:`hemotwin.vision.fitting.fit` with a cheap augmentation (random flip)
  and with an expensive one (flip + 5 ms of busy CPU work per image, a stand-in for twin re-imaging),
  with 0, 1 and 2 DataLoader workers: the ratio cheap/expensive is what "twin costs < 2x" refers to;
- the model file size and the parameter / MAC counts.

Usage: ``.venv/bin/python benchmarks/bench_vision_speed.py [--quick] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import hemotwin
from hemotwin.vision.engines import InferenceEngine
from hemotwin.vision.fitting import CellArrayDataset, TrainConfig, fit
from hemotwin.vision.modelfile import save_model
from hemotwin.vision.models import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_UM_PER_PX,
    ModelConfig,
    build_model,
    count_macs,
    count_parameters,
)

N_CLASSES = 15


def _flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(img[:, ::-1]) if rng.random() < 0.5 else img


def _expensive(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # 5 ms of real CPU work (not sleep: a sleeping worker would leave its core to the trainer).
    buf = np.linspace(1.0, 2.0, 4096)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.005:
        np.sqrt(buf, out=buf)
    return _flip(img, rng)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def bench_inference(net: torch.nn.Module, n_images: int, repeats: int) -> dict:
    x = np.random.default_rng(0).integers(0, 256, (n_images, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE, 3),
                                          dtype=np.uint8)
    out = {}
    for backend in ("onnxruntime", "torch"):
        for bs in (1, 32, 128):
            eng = InferenceEngine(net, backend=backend, batch_size=bs)
            n = min(n_images, 64) if bs == 1 else n_images
            eng.run(x[: min(n, bs * 2)])  # warm-up: allocations, kernel selection
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                eng.run(x[:n])
                times.append(time.perf_counter() - t0)
            out[f"{backend}_batch{bs}_cells_per_s"] = round(n / statistics.median(times), 1)
    return out


def bench_norms(n_images: int, repeats: int) -> dict:
    out = {}
    x = np.random.default_rng(0).integers(0, 256, (n_images, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE, 3),
                                          dtype=np.uint8)
    for norm in ("group", "layer", "batch"):
        torch.manual_seed(0)
        eng = InferenceEngine(build_model(ModelConfig(n_classes=N_CLASSES, norm=norm)), batch_size=128)
        eng.run(x[:128])
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            eng.run(x)
            times.append(time.perf_counter() - t0)
        out[f"onnxruntime_{norm}norm_batch128_cells_per_s"] = round(n_images / statistics.median(times), 1)
    return out


def bench_training(n_images: int) -> dict:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n_images, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE, 3), dtype=np.uint8)
    y = rng.integers(0, N_CLASSES, n_images)
    cfg = ModelConfig(n_classes=N_CLASSES)
    out = {}
    runs = [("cheap", _flip, 0), ("cheap", _flip, 1), ("expensive_5ms", _expensive, 0),
            ("expensive_5ms", _expensive, 1), ("expensive_5ms", _expensive, 2)]
    for name, aug, workers in runs:
        ds = CellArrayDataset(x, y, aug=aug, seed=0)
        # 2 epochs; the second is reported (the first pays worker start-up and allocator warm-up).
        res = fit(cfg, ds, config=TrainConfig(epochs=2, batch_size=64, num_workers=workers, seed=0))
        out[f"train_{name}_workers{workers}_images_per_s"] = round(res.history[-1]["train_images_per_s"], 1)
    cheap = max(out["train_cheap_workers0_images_per_s"], out["train_cheap_workers1_images_per_s"])
    best_exp = max(v for k, v in out.items() if "expensive" in k)
    out["expensive_over_cheap_time_ratio"] = round(cheap / best_exp, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer images and repeats (a smoke run)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    n_inf, reps, n_train = (128, 2, 128) if args.quick else (512, 5, 512)

    torch.manual_seed(0)
    net = build_model(ModelConfig(n_classes=N_CLASSES)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        size = save_model(Path(tmp) / "m.hemo", net, labels=[f"c{i}" for i in range(N_CLASSES)]).stat().st_size

    result = {
        "benchmark": "vision_speed",
        "hemotwin": hemotwin.__version__,
        "machine": {"cores_available": _cores(), "platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "onnxruntime": ort.__version__,
                    "torch_threads": torch.get_num_threads()},
        "model": {"input_size": DEFAULT_INPUT_SIZE, "um_per_px": DEFAULT_UM_PER_PX, "norm": net.config.norm,
                  "widths": list(net.config.widths), "blocks": list(net.config.blocks),
                  "parameters": count_parameters(net), "macs_per_image": count_macs(net),
                  "model_file_bytes": size},
        "inference": bench_inference(net, n_inf, reps),
        "inference_by_norm": bench_norms(n_inf, reps),
        "training": bench_training(n_train),
        "targets": {"inference_cells_per_s": 500, "model_file_mb": 10, "twin_over_color_time_ratio": 2.0},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
