#!/bin/sh
# The paper's sine example: a ConvMachine and a RecurMachine, each with a 1x1
# readout, trained with Adam(0.1) to predict sin(t) + noise shifted by 10
# steps. Usage: sh examples/run-sine.sh [path/to/machc]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
machc=${1:-$root/bin/machc}
out=$root/build/demo
mkdir -p "$out"
[ -x "$machc" ] || { echo "run-sine.sh: $machc not found; run 'make' first" >&2; exit 1; }

# 32 series of t = -pi:0.1:pi (63 steps), noise uniform in [-0.05, 0.05];
# the target is the series shifted by 10 steps (circularly, as the paper's
# circshift), one series per CSV line.
awk -v out="$out" 'BEGIN {
    srand(1); n = 63; pi = 3.14159265358979
    for (b = 0; b < 32; b++) {
        for (i = 0; i < n; i++) v[i] = sin(-pi + 0.1 * i) + 0.1 * (rand() - 0.5)
        for (i = 0; i < n; i++) {
            printf "%s%.17g", (i ? "," : ""), v[i] > (out "/sine-x.csv")
            printf "%s%.17g", (i ? "," : ""), v[(i - 10 + n) % n] > (out "/sine-y.csv")
        }
        print "" > (out "/sine-x.csv"); print "" > (out "/sine-y.csv")
    } }'
zero=$(awk -F, '{ for (i = 1; i <= NF; i++) { s += $i * $i; n++ } } END { printf "%.6g", s / n }' "$out/sine-y.csv")
echo "data: 32 series of 63 steps; MSE of predicting zero: $zero"
for m in sine_conv sine_recur; do
    "$machc" --dtype f64 -m "$m" "$root/examples/sine.mach" -o "$out/$m"
    "$out/$m" info | sed -n '1p'
    "$machc" explain -m "$m" "$root/examples/sine.mach" | sed -n '2,3p'
    "$out/$m" train --data "$out/sine-x.csv" --targets "$out/sine-y.csv" --loss mse \
        --optimizer adam --lr 0.1 --epochs 1000 --batch 32 --seed 0 --print-every 250 \
        --out "$out/$m.npz"
done
