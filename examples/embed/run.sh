#!/bin/sh
# The embedded walk-through of docs/embedding.md, end to end: train
# examples/waves.mach, bake its weights into standalone C, build classify.c
# for this machine and run it; then, where the cross tools are installed
# (make deps-cross), build it for a Cortex-M4F (sizes and stack per
# function) and as a static ARM Linux program run under qemu-arm. Last,
# training on the device: train.c trains examples/poly.mach from its initial
# weights with the standalone training step, here and under qemu-arm.
# Usage: sh examples/embed/run.sh [path/to/machc]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
machc=${1:-$root/bin/machc}
here=$root/examples/embed
out=$root/build/embed
mkdir -p "$out"

# 1. train (the binary, in f64), as examples/run-waves.sh does
sh "$root/examples/run-waves.sh" "$machc" | tail -1

# 2. bake: waves.c, waves.h and waves_weights.c, in f32
"$machc" --standalone --dtype f32 "$root/examples/waves.mach" -o "$out/waves.c" \
    --weights "$root/build/demo/waves.npz"

# 3. build and run on this machine
cc -std=c99 -O2 -Wall -Wextra -pedantic -Werror -I"$out" "$here/classify.c" "$out/waves.c" \
    "$out/waves_weights.c" -lm -o "$out/classify"
"$out/classify" | tail -1

# 4. a Cortex-M4F build: code size of the model, stack of each function
if command -v arm-none-eabi-gcc >/dev/null 2>&1; then
    m4="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -std=c99"
    (cd "$out" && arm-none-eabi-gcc $m4 -fstack-usage -c waves.c waves_weights.c)
    echo "Cortex-M4F, -Os:"
    arm-none-eabi-size "$out/waves.o" "$out/waves_weights.o" | sed 's/^/  /'
    sed 's/^[^:]*:[0-9]*:[0-9]*:/  stack: /' "$out/waves.su"
    arm-none-eabi-gcc $m4 --specs=nosys.specs -I"$out" "$here/classify.c" "$out/waves.c" \
        "$out/waves_weights.c" -lm -o "$out/classify.elf"
    arm-none-eabi-size "$out/classify.elf" | sed 's/^/  /'
else
    echo "arm-none-eabi-gcc not installed: no Cortex-M4F build (make deps-cross)"
fi

# 5. the same program on ARM Linux, under qemu-arm
if command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 && command -v qemu-arm >/dev/null 2>&1; then
    arm-linux-gnueabihf-gcc -std=c99 -O2 -static -I"$out" "$here/classify.c" "$out/waves.c" \
        "$out/waves_weights.c" -lm -o "$out/classify-arm"
    printf "qemu-arm: "
    qemu-arm "$out/classify-arm" | tail -1
else
    echo "arm-linux-gnueabihf-gcc or qemu-arm not installed: no ARM Linux run (make deps-cross)"
fi

# 6. training on the device: poly's initial weights (BIN init) baked with the
# training step, train.c builds and runs it, here and on ARM Linux
"$machc" --dtype f32 "$root/examples/poly.mach" -o "$out/poly-bin"
"$out/poly-bin" init --seed 0 --out "$out/poly-init.npz" >/dev/null
"$machc" --standalone --train --loss mse --optimizer adam --dtype f32 "$root/examples/poly.mach" \
    -o "$out/poly.c" --weights "$out/poly-init.npz"
cc -std=c99 -O2 -Wall -Wextra -pedantic -Werror -I"$out" "$here/train.c" "$out/poly.c" \
    "$out/poly_weights.c" -lm -o "$out/train"
"$out/train"
if command -v arm-none-eabi-gcc >/dev/null 2>&1; then
    m4="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -std=c99"
    arm-none-eabi-gcc $m4 --specs=nosys.specs -I"$out" "$here/train.c" "$out/poly.c" \
        "$out/poly_weights.c" -lm -o "$out/train.elf"
    echo "Cortex-M4F, the trainer (model, training step, newlib):"
    arm-none-eabi-size "$out/train.elf" | sed 's/^/  /'
fi
if command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 && command -v qemu-arm >/dev/null 2>&1; then
    arm-linux-gnueabihf-gcc -std=c99 -O2 -static -I"$out" "$here/train.c" "$out/poly.c" \
        "$out/poly_weights.c" -lm -o "$out/train-arm"
    printf "qemu-arm: "
    qemu-arm "$out/train-arm" | tail -1
fi
