#!/bin/sh
# bench/check.sh — do machc and the PyTorch models of bench/torch_bench.py
# compute the same thing? For every benchmark configuration (bench/configs.sh)
# or those whose name contains PATTERN, it compiles the machine to an f32
# binary with machc and runs bench/check_torch.py on it: same FLOP count,
# same outputs, input gradient and parameter gradients from machc's initial
# weights, to 1e-5 relative (f32). Needs python3 with torch and numpy
# (TORCH_PYTHON, default /usr/bin/python3: Debian's python3-torch); not part
# of `make test`. `make bench-check` runs it.
#
#   sh bench/check.sh path/to/machc [PATTERN]
#
# Exit status 0 when every checked configuration agrees.
set -eu

if [ $# -lt 1 ]; then
    echo "usage: sh bench/check.sh path/to/machc [PATTERN]" >&2
    exit 2
fi
MACHC=$1
PATTERN=${2:-}
case $MACHC in /*) ;; *) MACHC=$(pwd)/$MACHC ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/build/bench-check
PY=${TORCH_PYTHON:-/usr/bin/python3}
. "$ROOT/bench/configs.sh"

if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
    echo "bench/check.sh: $PY cannot import torch and numpy (Debian: apt-get install python3-torch)" >&2
    exit 1
fi
mkdir -p "$OUT"

status=0
echo "max|a - b| / max|b|, machc's initial weights, f32 (bench/check_torch.py explains the columns)"
printf '%-22s %11s %1s  %8s %8s %8s  %9s %9s\n' configuration FLOPs "" fwd dinput dparams machc/f64 torch/f64
bench_configs "$PATTERN" >"$OUT/configs.txt"
while IFS='|' read -r file name kind batch a1 a2 a3; do
    bench_gen "$kind" "$OUT/$file.mach" "$a1" "$a2" "$a3"
    "$MACHC" --dtype f32 "$OUT/$file.mach" -o "$OUT/$file"
    # the configuration's batch, at most 64 samples: enough to see a difference
    n=$batch
    [ "$n" -le 64 ] || n=64
    line=$("$PY" "$ROOT/bench/check_torch.py" "$OUT/$file" "$kind" "$n" "$a1" "$a2" "$a3" </dev/null) || status=1
    printf '%-22s %s\n' "$name" "$line"
done <"$OUT/configs.txt"
exit $status
