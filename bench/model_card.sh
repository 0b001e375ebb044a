#!/usr/bin/env bash
# Accuracy figures of a model, as reported in its model card (models/README.md).
#
#   bench/model_card.sh [MODEL] [WORK_DIR]
#
# MODEL: default models/facelivenet-default.keras. WORK_DIR: the folder of
# bin/train-default (default ./train-default), whose ck-heldout/ holds the CK+ subjects
# kept out of training. Reports go to WORK_DIR/eval/*.json (+ ROC, confusion and
# timeline plots); a summary table is printed at the end. About 10 minutes on 2 cores.
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
echo "== verify-video d18.mp4, Surprise challenge (reference: the clip's first frame)" >&2
"$PY" -c "import sys, cv2; ok, f = cv2.VideoCapture(sys.argv[1]).read(); assert ok; cv2.imwrite(sys.argv[2], f)" \
  "$DATA/videos/d18.mp4" "$OUT/d18_first_frame.png"
set +e
"$FL" verify-video "$DATA/videos/d18.mp4" --model "$MODEL" --ref "$OUT/d18_first_frame.png" --challenge surprise \
  --timeline "$OUT/d18_timeline.png" --json -q > "$OUT/d18.json"
echo "verify-video exit code: $?" >&2
set -e

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
j = {n: json.loads((out / f"{n}.json").read_text()) for n in ("lfw", "fer", "fer_nhs", "ck_auth", "d18")}
lfw, fer, nhs, auth, d18 = (j[n] for n in ("lfw", "fer", "fer_nhs", "ck_auth", "d18"))
print("| figure | value |\n|---|---|")
print(f"| LFW 10-fold accuracy (--detect) | {lfw['accuracy']:.4f} ± {lfw['accuracy_std']:.4f} "
      f"(AUC {lfw['auc']:.4f}, EER {lfw['eer']:.4f}, VAL {lfw['val']:.4f} @ FAR {lfw['far']:.4f}) |")
print(f"| FER2013 validation, 7 classes | {fer['accuracy']:.4f} ({fer['images']} images) |")
print(f"| FER2013 validation, neutral/happy/surprise | {nhs['accuracy']:.4f} ({nhs['images']} images) |")
keys = ("acc_auth", "acc_verif", "acc_expre", "acc_live")
print("| CK+ held-out subjects, holistic protocol | "
      + ", ".join(f"{k} {auth[k]:.4f}" for k in keys if k in auth) + f" ({auth.get('samples', '?')} samples) |")
print(f"| verify-video d18.mp4, Surprise | {d18['decision']}: "
      + "; ".join(r['message'] for r in d18.get('reasons', [])) + " |")
EOF
