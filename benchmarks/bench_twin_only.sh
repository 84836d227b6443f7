#!/usr/bin/env bash
# Twin-only 15-class classifier through the CLI (issue 3, synthetic measurement), prints JSON.
#
# Training: twin cells only, 150 per class per preset under randomize(0.6) neighbours (seeds 100-103)
# and 150 more under randomize(1.0) neighbours (seeds 200-203), i.e. 600 + 600 per class over the four
# presets, 28 µm crops; `hemotwin train --augment color` with early stopping on its validation split.
# Test: the model card's twin test sets, seeds no training used: analyzer-100x seed 5001 (nominal
# profile) and wsi-40x seed 5002 under randomize(1.0) (profiles not seen in training), 20 per class.
#
# Usage: bash benchmarks/bench_twin_only.sh [WORKDIR] [EPOCHS]   (about 1.5 h on 2 shared cores)
set -euo pipefail
W=${1:-/tmp/twin_only}
EPOCHS=${2:-12}
HT=${HEMOTWIN:-.venv/bin/hemotwin}
PY=${PYTHON:-.venv/bin/python}
export OPENBLAS_NUM_THREADS=1
mkdir -p "$W"
size() { $PY -c "from hemotwin.twin.profiles import load_profile; print(round($2/load_profile('$1').camera.um_per_px))"; }
k=0
DATA=()
for p in analyzer-100x phone-40x wsi-20x wsi-40x; do
  s=$(size $p 28.0)
  $HT simulate cells --out "$W/s06/$p" --profile $p --per-class 150 --size "$s" --randomize 0.6 --seed $((100 + k)) --workers 0 --overwrite > /dev/null
  $HT simulate cells --out "$W/s10/$p" --profile $p --per-class 150 --size "$s" --randomize 1.0 --seed $((200 + k)) --workers 0 --overwrite > /dev/null
  DATA+=(--data "$W/s06/$p" --data "$W/s10/$p")
  k=$((k + 1))
done
$HT simulate cells --out "$W/test_an" --profile analyzer-100x --per-class 20 --size "$(size analyzer-100x 28.0)" --seed 5001 --workers 0 --overwrite > /dev/null
$HT simulate cells --out "$W/test_wsi" --profile wsi-40x --per-class 20 --size "$(size wsi-40x 28.0)" --randomize 1.0 --seed 5002 --workers 0 --overwrite > /dev/null
t0=$(date +%s)
$HT train "${DATA[@]}" --augment color --epochs "$EPOCHS" --out "$W/twin_only.hemo" --overwrite > "$W/train.log" 2>&1
t1=$(date +%s)
for s in an wsi; do $HT evaluate --model "$W/twin_only.hemo" --data "$W/test_$s" --out "$W/eval_$s" --overwrite > /dev/null; done
# The same model on real cells through the label mappings (skipped without ../shared/data).
SHARED=${SHARED:-../shared/data}
if [ -d "$SHARED/bccd" ]; then
  $HT evaluate --model "$W/twin_only.hemo" --data "$SHARED/bccd" --um-per-px 0.0725 --exclude basophil --out "$W/eval_bccd" --overwrite > /dev/null
fi
if [ -d "$SHARED/pbc" ]; then
  $HT evaluate --model "$W/twin_only.hemo" --data "$SHARED/pbc" --exclude platelet --out "$W/eval_pbc" --overwrite > /dev/null
fi
$PY - "$W" $((t1 - t0)) <<'PY'
import json, sys
w, secs = sys.argv[1], int(sys.argv[2])
out = {"benchmark": "twin_only_cli", "train_seconds": secs}
import os
for s, name in (("an", "analyzer-100x unseen seeds"), ("wsi", "wsi-40x unseen randomize(1.0) profiles"),
                ("bccd", "BCCD crops (real, basophils excluded)"), ("pbc", "PBC (real, platelets excluded)")):
    if not os.path.exists(f"{w}/eval_{s}/report.json"):
        continue
    m = json.load(open(f"{w}/eval_{s}/report.json"))["metrics"]
    out[name] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4), "n": m["n"],
                 "per_class_f1": {k: round(v["f1"], 3) for k, v in m["per_class"].items()}}
print(json.dumps(out, indent=1))
PY
