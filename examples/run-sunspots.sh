#!/bin/sh
# Sunspots, 1700-2008 (examples/data/sunspots.csv, public domain data from
# NOAA's NGDC as statsmodels ships it): forecast each year from the 9 before
# it. Train on 1700-1948, test on 1949-2008, each test year forecast once
# (a window of 70 years whose first 10 are only history: --warmup-steps 9).
# Compared: the last-value forecast, a least-squares AR(9) that machc fits as
# a linear machine, and a small tanh network. Usage: sh examples/run-sunspots.sh [machc]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
machc=${1:-$root/bin/machc}
out=$root/build/demo
mkdir -p "$out"
[ -x "$machc" ] || { echo "run-sunspots.sh: $machc not found; run 'make' first" >&2; exit 1; }
csv=$root/examples/data/sunspots.csv
# the header line stays: machc detects it; the column is picked by name
awk -F, 'NR == 1 || ($1 + 0 >= 1700 && $1 + 0 <= 1948)' "$csv" > "$out/sunspots-train.csv"
awk -F, 'NR == 1 || $1 + 0 >= 1939' "$csv" > "$out/sunspots-test.csv"
opts="--data-cols SUNACTIVITY --scale 0.01 --windows 69:1 --warmup-steps 9 --loss mse"
for m in sunspots_ar sunspots_net; do
    "$machc" --dtype f64 -m "$m" "$root/examples/sunspots.mach" -o "$out/$m"
    case $m in
        sunspots_ar) train="--optimizer adam --lr 0.01 --epochs 3000 --batch 180" ;;
        *) train="--optimizer adam --lr 0.003 --epochs 300 --batch 16" ;;
    esac
    # shellcheck disable=SC2086
    "$out/$m" train --data "$out/sunspots-train.csv" $opts $train --seed 0 --quiet \
        --out "$out/$m.npz" > /dev/null
    # shellcheck disable=SC2086
    "$out/$m" eval --weights "$out/$m.npz" --data "$out/sunspots-test.csv" $opts \
        > "$out/$m-eval.txt"
done
# MSE in units of sunspot number squared (the data were scaled by 0.01)
awk '/one-step-ahead/ { n++; m[n] = $3 * 1e4; naive = $NF * 1e4 }
     END { printf "test 1949-2008, one year ahead, MSE (sunspot number^2):\n"
           printf "  last-value forecast       %8.1f\n", naive
           printf "  AR(9), least squares      %8.1f   (sunspots_ar, linear)\n", m[1]
           printf "  tanh network, 16 features %8.1f   (sunspots_net)\n", m[2] }' \
    "$out/sunspots_ar-eval.txt" "$out/sunspots_net-eval.txt"
