#!/bin/sh
# make fuzz: libFuzzer over the compiler's front and middle end (fuzz_machc,
# seeded with every .mach file of the repository) and over the runtime's
# readers: .npy (fuzz_npy), .npz with zip64 and deflate (fuzz_npz), CSV and
# column selection (fuzz_csv), class labels in any format (fuzz_labels) and
# the argument parser (fuzz_args), each seeded from tests/fuzz/corpus/NAME/.
# FUZZ_SECONDS (default 300) bounds each target's run; FUZZ_TARGETS (default
# all) picks some. Findings go to build/fuzz/NAME/; each one becomes a
# regression test (tests/test_hostile.c or the reader's own suite).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/fuzz
secs=${FUZZ_SECONDS:-300}
targets=${FUZZ_TARGETS:-machc npy npz csv labels args}
cd "$root"
flags="-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined"
for t in $targets; do
  mkdir -p "$out/$t/corpus"
  if [ "$t" = machc ]; then
    cp examples/*.mach stdlib/*.mach tests/golden/*.mach tests/errors/*.mach "$out/$t/corpus/" 2>/dev/null || true
    srcs=$(ls compiler/*.c | grep -v compiler/main.c)
    # the compiler reads weights (--weights) through the runtime's readers
    clang $flags -Icompiler -Iruntime -Ibuild/gen tests/fuzz/fuzz_machc.c $srcs build/gen/lexer.c \
        build/gen/parser.c runtime/*.c -lz -lm -o "$out/$t/fuzz_$t"
    maxlen=4096
  else
    cp tests/fuzz/corpus/$t/* "$out/$t/corpus/"
    clang $flags -Iruntime tests/fuzz/fuzz_$t.c runtime/*.c -lz -lm -o "$out/$t/fuzz_$t"
    maxlen=65536
  fi
  echo "fuzz_$t: fuzzing for $secs s; findings go to $out/$t/"
  # -close_fd_mask=2: the readers print a one-line reason per bad input
  "$out/$t/fuzz_$t" -max_total_time="$secs" -max_len=$maxlen -timeout=10 -rss_limit_mb=2048 \
      -close_fd_mask=2 -artifact_prefix="$out/$t/" "$out/$t/corpus"
done
