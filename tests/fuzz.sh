#!/bin/sh
# make fuzz: libFuzzer over the front and middle end, seeded with every
# .mach file of the repository. FUZZ_SECONDS (default 300) bounds the run.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/fuzz
mkdir -p "$out/corpus"
cd "$root"
cp examples/*.mach stdlib/*.mach tests/golden/*.mach tests/errors/*.mach "$out/corpus/" 2>/dev/null || true
srcs=$(ls compiler/*.c | grep -v compiler/main.c)
clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Icompiler -Ibuild/gen \
    tests/fuzz/fuzz_machc.c $srcs build/gen/lexer.c build/gen/parser.c -lm -o "$out/fuzz_machc"
echo "fuzzing for ${FUZZ_SECONDS:-300} s; crashes go to $out/"
"$out/fuzz_machc" -max_total_time="${FUZZ_SECONDS:-300}" -max_len=4096 -timeout=10 \
    -artifact_prefix="$out/" "$out/corpus"
