#!/usr/bin/env bash
# Accuracy figures of a model, as reported in its model card (models/README.md).
#
#   bench/model_card.sh [MODEL] [WORK_DIR]
#
# MODEL: default models/facelivenet-default.keras. WORK_DIR: the folder of
# bin/train-default (default ./train-default), whose ck-heldout/ holds the CK+ subjects
# kept out of training. Reports go to WORK_DIR/eval/*.json (+ ROC, confusion and
# timeline plots); a summary table is printed at the end. About 15 minutes on 2 cores.
# With WORK_DIR/joint/data (the joint manifest of bin/train-default) it also measures,
# in the model's own geometry: FER2013 validation under FER+ majority labels, the
# held-out Taiwanese performers, and (similarity models) the TAR at FAR <= 0.01 on the
# held-out identities. Every clip of ../shared/data/videos is verified with its first
# frame as the reference, and bench/attacks.py runs the attack suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:-$ROOT/models/facelivenet-default.keras}"
WORK="${2:-$ROOT/train-default}"
DATA="${FACELIVENET_SHARED_DATA:-$ROOT/../shared/data}"
PY="$ROOT/.venv/bin/python"
FL="$ROOT/.venv/bin/facelivenet"
OUT="$WORK/eval"
mkdir -p "$OUT"
[ -d "$WORK/ck-heldout" ] || { echo "error: $WORK/ck-heldout not found: run bin/train-default $WORK first" >&2; exit 2; }

echo "== LFW 10-fold (our MTCNN + the model's alignment)" >&2
"$FL" evaluate-verification --model "$MODEL" --pairs "$DATA/lfw/pairs.txt" --images "$DATA/lfw/lfw_deepfunneled" \
  --detect --roc "$OUT/lfw_roc.png" --json -q > "$OUT/lfw.json"
echo "== FER2013 validation (PublicTest), 7 classes and neutral/happy/surprise" >&2
"$FL" evaluate-expression --model "$MODEL" --data "$DATA/fer2013/validation" \
  --confusion "$OUT/fer_confusion.png" --json -q > "$OUT/fer.json"
"$FL" evaluate-expression --model "$MODEL" --data "$DATA/fer2013/validation" --classes neutral,happy,surprise \
  --confusion "$OUT/fer_nhs_confusion.png" --json -q > "$OUT/fer_nhs.json"
echo "== holistic protocol on the held-out CK+ subjects" >&2
"$FL" make-auth-protocol --data "$WORK/ck-heldout" --out "$OUT/ck_protocol.csv" > /dev/null
"$FL" evaluate-auth --model "$MODEL" --protocol "$OUT/ck_protocol.csv" --roc "$OUT/ck_auth_roc.png" \
  --json -q > "$OUT/ck_auth.json"
J="$WORK/joint/data"
if [ -f "$J/manifest.jsonl" ]; then
  ALIGN="$("$PY" -c "import sys; from facelivenet.api import load_model; print(load_model(sys.argv[1]).config.alignment)" "$MODEL" 2>/dev/null)"
  echo "== FER2013 validation under FER+ majority labels; held-out Taiwanese performers ($ALIGN geometry)" >&2
  rm -rf "$OUT/faces"
  "$FL" manifest-faces "$J" "$OUT/faces/ferplus" --by expression --split val --source fer --model "$MODEL" -q > /dev/null
  "$FL" evaluate-expression --model "$MODEL" --data "$OUT/faces/ferplus" --confusion "$OUT/ferplus_confusion.png" \
    --json -q > "$OUT/ferplus.json"
  "$FL" evaluate-expression --model "$MODEL" --data "$OUT/faces/ferplus" --classes neutral,happy,surprise \
    --json -q > "$OUT/ferplus_nhs.json"
  if [ "$ALIGN" = similarity ]; then
    "$FL" manifest-faces "$J" "$OUT/faces/taiwanese" --by expression --split val --source taiwanese --model "$MODEL" -q > /dev/null
    "$FL" evaluate-expression --model "$MODEL" --data "$OUT/faces/taiwanese" --classes neutral,happy,surprise \
      --json -q > "$OUT/taiwanese_nhs.json"
    echo "== TAR at FAR <= 0.01 on the held-out identities" >&2
    "$FL" manifest-faces "$J" "$OUT/faces/identities" --by identity --split val --model "$MODEL" -q > /dev/null
    "$FL" calibrate --model "$MODEL" --data "$OUT/faces/identities" --far 0.01 --out "$OUT/far001.keras" --force \
      --json -q > "$OUT/far001.json"
    "$FL" calibrate --model "$MODEL" --data "$OUT/faces/identities" --out "$OUT/best.keras" --force \
      --json -q > "$OUT/best_accuracy.json"
    rm -f "$OUT/far001.keras" "$OUT/best.keras"
  fi
fi

echo "== verify-video on every clip (reference: the clip's first frame)" >&2
set +e
for clip in d18:surprise d12:surprise d9:happy d20:happy d20:surprise; do
  name="${clip%%:*}"; expr="${clip##*:}"
  "$PY" -c "import sys, cv2; ok, f = cv2.VideoCapture(sys.argv[1]).read(); assert ok; cv2.imwrite(sys.argv[2], f)" \
    "$DATA/videos/$name.mp4" "$OUT/${name}_first_frame.png"
  "$FL" verify-video "$DATA/videos/$name.mp4" --model "$MODEL" --ref "$OUT/${name}_first_frame.png" \
    --challenge "$expr" --timeline "$OUT/${name}_${expr}_timeline.png" --json -q > "$OUT/${name}_${expr}.json"
  echo "verify-video $name $expr: exit code $?" >&2
done
echo "== attack suite" >&2
"$PY" "$ROOT/bench/attacks.py" --model "$MODEL" > "$OUT/attacks.txt" 2>&1
echo "bench/attacks.py: exit code $?" >&2
set -e

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(n):
    p = out / f"{n}.json"
    return json.loads(p.read_text()) if p.exists() and p.stat().st_size else None
lfw, fer, nhs, auth = (load(n) for n in ("lfw", "fer", "fer_nhs", "ck_auth"))
print("| figure | value |\n|---|---|")
print(f"| LFW 10-fold accuracy (--detect) | {lfw['accuracy']:.4f} ± {lfw['accuracy_std']:.4f} "
      f"(AUC {lfw['auc']:.4f}, EER {lfw['eer']:.4f}, VAL {lfw['val']:.4f} @ FAR {lfw['far']:.4f}) |")
for name, label in (("far001", "held-out identities, TAR at FAR <= 0.01"),
                    ("best_accuracy", "held-out identities, best accuracy")):
    c = load(name)
    if c:
        print(f"| {label} | TAR {c['val']:.4f} at FAR {c['far']:.4f}, threshold {c['threshold']:.4f}, "
              f"accuracy {c['accuracy']:.4f} ({c['identities']} identities, {c['pairs']} pairs) |")
print(f"| FER2013 validation, folder labels, 7 classes | {fer['accuracy']:.4f} ({fer['images']} images) |")
print(f"| FER2013 validation, folder labels, neutral/happy/surprise | {nhs['accuracy']:.4f} ({nhs['images']} images) |")
def recalls(d):
    return ", ".join(f"{c} {v:.2f}" for c, v in d["recall"].items() if v is not None)
for name, label in (("ferplus", "FER2013 validation, FER+ majority, all classes"),
                    ("ferplus_nhs", "FER2013 validation, FER+ majority, neutral/happy/surprise"),
                    ("taiwanese_nhs", "Taiwanese held-out performers, neutral/happy/surprise")):
    d = load(name)
    if d:
        print(f"| {label} | {d['accuracy']:.4f} ({d['images']} images; recall {recalls(d)}) |")
keys = ("acc_auth", "acc_verif", "acc_expre", "acc_live")
print("| CK+ held-out subjects, holistic protocol | "
      + ", ".join(f"{k} {auth[k]:.4f}" for k in keys if k in auth) + f" ({auth.get('samples', '?')} samples) |")
for clip in ("d18_surprise", "d12_surprise", "d9_happy", "d20_happy", "d20_surprise"):
    d = load(clip)
    if d:
        print(f"| verify-video {clip.replace('_', ' ')} | {d['decision']}: "
              + "; ".join(r.get('code', '?') for r in d.get('reasons', [])) + " |")
attacks = (out / "attacks.txt").read_text().splitlines() if (out / "attacks.txt").exists() else []
for line in attacks:
    if line.startswith(("APCER", "BPCER")):
        print(f"| bench/attacks.py | {line} |")
EOF
