#!/bin/sh
# Fashion-MNIST with no Python: the IDX files of Debian's dataset-fashion-mnist
# are read as they ship (gzipped, u8 pixels scaled by 1/255), examples/fmnist.mach
# is trained with Adam and softmax cross-entropy, and the test accuracy printed.
# Usage: sh examples/run-fmnist.sh [path/to/machc] [epochs]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
machc=${1:-$root/bin/machc}
epochs=${2:-${FMNIST_EPOCHS:-5}}
data=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
out=$root/build/demo
mkdir -p "$out"
[ -x "$machc" ] || { echo "run-fmnist.sh: $machc not found; run 'make' first" >&2; exit 1; }
[ -f "$data/train-images-idx3-ubyte.gz" ] || {
    echo "run-fmnist.sh: no $data/train-images-idx3-ubyte.gz; install dataset-fashion-mnist" >&2; exit 1; }

"$machc" "$root/examples/fmnist.mach" -o "$out/fmnist"
"$machc" explain "$root/examples/fmnist.mach" | sed -n '2p'
# --print-every 1: one line per epoch, with its time
"$out/fmnist" train --data "$data/train-images-idx3-ubyte.gz" --scale 0.00392156862745098 \
    --targets "$data/train-labels-idx1-ubyte.gz" --loss xent --optimizer adam --lr 0.001 \
    --batch 64 --epochs "$epochs" --seed 0 --print-every 1 --log "$out/fmnist-log.csv" \
    --out "$out/fmnist.npz"
awk -F, 'NR > 1 { printf "epoch %d: %.1f s\n", $1, $6 - prev; prev = $6 }' "$out/fmnist-log.csv"
echo "test set (10000 images):"
"$out/fmnist" eval --weights "$out/fmnist.npz" --data "$data/t10k-images-idx3-ubyte.gz" \
    --scale 0.00392156862745098 --targets "$data/t10k-labels-idx1-ubyte.gz" --loss xent
