#!/usr/bin/env bash
# The GPU check of issue 19, for the day a CUDA machine is lent: install, CUDA tests, speed at the published
# model's sizes, one summary; all within 8 minutes (each step has its own timeout).
#
#   bash benchmarks/gpu_check.sh            # from the repository root; writes gpu-check/ beside it
#
# PYTHON=/path/to/python skips the install and uses that interpreter (torch with CUDA and tinyaudio installed).
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
OUT=${OUT_DIR:-gpu-check}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
started=$(date +%s)

step() {  # step NAME SECONDS COMMAND...: run with a timeout, log to $OUT/NAME.log, record the exit status
    local name=$1 seconds=$2
    shift 2
    echo "== $name (at most ${seconds} s)"
    timeout --kill-after=10 "$seconds" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    echo "$status" >"$OUT/$name.status"
    tail -n 5 "$OUT/$name.log"
    echo "   exit $status after $(($(date +%s) - started)) s in all"
}

if [ -z "${PYTHON:-}" ]; then
    step venv 30 python3 -m venv .venv-gpu
    PYTHON=.venv-gpu/bin/python
    # PyPI's Linux torch wheel is the CUDA build
    step install 240 "$PYTHON" -m pip install -q torch -e '.[dev]'
fi

step env 30 "$PYTHON" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
step tests 90 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py
step speed 240 "$PYTHON" benchmarks/speed.py --real-size --device cuda --quick --clips 32 --long-minutes 5 \
    --no-heldout --json "$OUT/speed.json"

echo
echo "== summary ($(date -u +%Y-%m-%dT%H:%MZ), $(($(date +%s) - started)) s)"
for name in venv install env tests speed; do
    [ -f "$OUT/$name.status" ] && echo "   $name: exit $(cat "$OUT/$name.status")"
done
cat "$OUT/env.log"
grep -E "passed|failed|skipped|error" "$OUT/tests.log" | tail -n 1
if [ -f "$OUT/speed.json" ]; then
    "$PYTHON" - "$OUT/speed.json" <<'EOF'
import json
import sys

report = json.load(open(sys.argv[1]))
print(f"   {report['machine']}, {report['dtype']}, batch {report['batch_size']}, torch {report['torch']}")
for name, w in report["workloads"].items():
    print(
        f"   {name}: reference RTFx {w['reference_rtfx']}, tinyaudio RTFx {w['tinyaudio_rtfx']} "
        f"({w['speedup']}x), peak {w['tinyaudio_peak_memory_mb']} MB"
    )
EOF
fi
