"""The public PBC data set's finer labels, as the labels a 15-code model learns from real cells.

PBC (Acevedo et al., Data in Brief 2020;30:105474; CellaVision DM96, May-Grünwald-Giemsa, CC BY
4.0) files each cell under eight folders, and its file-name prefixes carry finer labels: band (BNE)
and segmented (SNE) neutrophils; promyelocytes (PMY), myelocytes (MY) and metamyelocytes (MMY) among
the immature granulocytes. With them the 15 Matek codes can be learnt from real cells for NGB/NGS
and PMO/MYB/MMZ. Cells whose prefix says nothing finer keep their group as a set-valued label
(``neutrophil``: NGB or NGS; ``ig``: PMO, PMB, MYB or MMZ). PBC is normal blood: its lymphocytes are
taught as typical lymphocytes (LYT), never atypical (LYA); its platelets are not white cells and
are left out.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from hemotwin.errors import InputError

__all__ = ["PBC_FINE_LABELS", "write_fine_label_manifest"]

#: PBC fine label (as in its manifests) -> the label trained (a code, or a group for a set-valued label;
#: None: not a white cell).
PBC_FINE_LABELS: dict[str, str | None] = {
    "band neutrophil": "NGB", "segmented neutrophil": "NGS", "neutrophil (unspecified)": "neutrophil",
    "promyelocyte": "PMO", "myelocyte": "MYB", "metamyelocyte": "MMZ", "ig (unspecified)": "ig",
    "eosinophil": "EOS", "basophil": "BAS", "lymphocyte": "LYT", "monocyte": "MON", "erythroblast": "EBO",
    "platelet": None,
}


def write_fine_label_manifest(parts: Sequence[tuple[str | Path, str | Path]], out: str | Path) -> dict[str, int]:
    """Write one ``manifest.csv`` of PBC images with the labels of :data:`PBC_FINE_LABELS`.

    Parameters
    ----------
    parts
        ``(image root, fine-label table)`` pairs; the table is a CSV with columns ``path`` (relative to
        the root) and ``fine_label`` (``pbc_more/manifest.csv``, ``pbc_more/fine_labels_pbc.csv``).
    out
        The manifest to write (``path`` absolute, ``label``, ``fine_label``, ``source``).

    Returns
    -------
    dict
        Cells written per trained label, and ``skipped`` (not white cells, or files missing).

    Raises
    ------
    InputError
        A missing table or root, a table without the two columns, or a fine label not in the map
        (the message names the table, the row and the label).
    """
    counts: dict[str, int] = {"skipped": 0}
    rows = []
    for root, table in parts:
        root, table = Path(root), Path(table)
        if not root.is_dir():
            raise InputError("parts", str(root), "a folder of PBC images")
        try:
            with open(table, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                records = list(reader)
                cols = reader.fieldnames or []
        except OSError as exc:
            raise InputError("parts", str(table), f"a readable fine-label table ({exc.strerror})") from exc
        if "path" not in cols or "fine_label" not in cols:
            raise InputError(str(table), cols, "columns path and fine_label")
        for n, rec in enumerate(records, start=2):
            fine = (rec["fine_label"] or "").strip().lower()
            if fine not in PBC_FINE_LABELS:
                raise InputError(f"{table}:row {n} (fine_label)", rec["fine_label"],
                                 f"one of {', '.join(PBC_FINE_LABELS)}")
            label = PBC_FINE_LABELS[fine]
            path = (root / rec["path"]).resolve()
            if label is None or not path.is_file():
                counts["skipped"] += 1
                continue
            counts[label] = counts.get(label, 0) + 1
            rows.append((str(path), label, fine, f"PBC {root.name}"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "fine_label", "source"])
        w.writerows(rows)
    return counts
