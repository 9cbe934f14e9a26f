#!/bin/sh
# Classifying sine, square and sawtooth waves with examples/waves.mach:
# softmax cross-entropy, Adam(0.01), a quarter of the samples held out.
# Usage: sh examples/run-waves.sh [path/to/machc]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
machc=${1:-$root/bin/machc}
out=$root/build/demo
mkdir -p "$out"
[ -x "$machc" ] || { echo "run-waves.sh: $machc not found; run 'make' first" >&2; exit 1; }

# 600 series of 32 steps, classes in turn: frequency 0.05 .. 0.15 cycles per
# step, random phase, noise uniform in [-0.05, 0.05]; labels 0, 1, 2.
awk -v out="$out" 'BEGIN {
    srand(7); pi = 3.14159265358979
    for (n = 0; n < 600; n++) {
        c = n % 3; f = 0.05 + 0.1 * rand(); ph = rand()
        for (t = 0; t < 32; t++) {
            u = f * t + ph; s = sin(2 * pi * u)
            v = c == 0 ? s : c == 1 ? (s >= 0 ? 1 : -1) : 2 * (u - int(u)) - 1
            printf "%s%.6f", (t ? "," : ""), v + 0.1 * (rand() - 0.5) > (out "/waves-x.csv")
        }
        print "" > (out "/waves-x.csv"); print c > (out "/waves-t.csv")
    } }'
"$machc" --dtype f64 "$root/examples/waves.mach" -o "$out/waves"
"$machc" explain "$root/examples/waves.mach" | sed -n '2,3p'
"$out/waves" train --data "$out/waves-x.csv" --targets "$out/waves-t.csv" --loss xent \
    --optimizer adam --lr 0.01 --epochs 100 --batch 32 --seed 0 --val-split 0.25 --val-split-tail \
    --print-every 25 --out "$out/waves.npz"
