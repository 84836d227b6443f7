"""PBC's finer labels become the labels a 15-code model learns (fine codes, set-valued groups, no platelets)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hemotwin.errors import InputError
from hemotwin.vision.fitting import target_masks
from hemotwin.vision.pbc import write_fine_label_manifest


def _root(tmp_path: Path, rows: list[tuple[str, str]]) -> tuple[Path, Path]:
    root = tmp_path / "pbc"
    for rel, _fine in rows:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(root / rel)
    table = tmp_path / "fine.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "fine_label"])
        w.writerows(rows)
    return root, table


def test_fine_labels_map_to_codes_and_sets(tmp_path):
    root, table = _root(tmp_path, [("neutrophil/BNE_1.jpg", "band neutrophil"), ("neutrophil/SNE_2.jpg",
                                   "segmented neutrophil"), ("neutrophil/NEU_3.jpg", "neutrophil (unspecified)"),
                                   ("ig/MY_4.jpg", "myelocyte"), ("lymphocyte/LY_5.jpg", "lymphocyte"),
                                   ("platelet/PLT_6.jpg", "platelet")])
    counts = write_fine_label_manifest([(root, table)], tmp_path / "m.csv")
    assert counts == {"skipped": 1, "NGB": 1, "NGS": 1, "neutrophil": 1, "MYB": 1, "LYT": 1}
    with open(tmp_path / "m.csv") as fh:
        labels = [r["label"] for r in csv.DictReader(fh)]
    masks = target_masks(labels, ["NGB", "NGS", "MYB", "LYT", "LYA"]).astype(int).tolist()
    # A real lymphocyte of normal blood is taught as typical (LYT), never as the atypical class.
    assert masks == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]


def test_unknown_fine_label_names_the_row(tmp_path):
    root, table = _root(tmp_path, [("x/A.jpg", "giant platelet")])
    with pytest.raises(InputError, match=r"fine\.csv:row 2 \(fine_label\)"):
        write_fine_label_manifest([(root, table)], tmp_path / "m.csv")


def test_missing_columns_are_refused(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    table = tmp_path / "t.csv"
    table.write_text("file,label\na.jpg,lymphocyte\n")
    with pytest.raises(InputError, match="path and fine_label"):
        write_fine_label_manifest([(root, table)], tmp_path / "m.csv")
