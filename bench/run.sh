#!/bin/sh
# bench/run.sh — forward / dual / training-step timings of machc-generated
# code, beside PyTorch's for the same configurations when PyTorch is there.
#
#   sh bench/run.sh path/to/machc [PATTERN]
#
# (`make bench [PATTERN=...] [THREADS=N]` runs it.) For every configuration
# of bench/configs.sh (or only those whose name contains PATTERN) it writes
# the .mach file into build/bench/, compiles it with machc to C (f32), links
# it with bench/bench.c and the f32 runtime, and runs it; the column legend
# is printed first, the total time last. Times are the CPU time of the
# timing thread, the minimum over interleaved rounds (bench/bench.c says why).
#
# When TORCH_PYTHON (default /usr/bin/python3, with Debian's python3-torch)
# can import torch, each configuration's machc binary is followed by
# bench/torch_bench.py on the same configuration (idiomatic PyTorch, the
# same FLOPs, timed the same way); the table gains the PyTorch columns and
# the ratios machc / PyTorch, and %peak divides GFLOP/s by the single-core
# sgemm peak (torch.mm 1024^3) measured at the start of the same run (and
# again at the end, to show whether the machine changed under the run).
# BENCH_TORCH=0 leaves PyTorch out. Without torch the table is machc's alone.
#
# Environment: CC (default clang), BENCH_CFLAGS (default -O3 -march=native),
# BENCH_MIN_TIME (0.2 s), BENCH_MIN_REPS (20), BENCH_MAX_TIME (1 s), BENCH_ROUNDS (7),
# BENCH_CLOCK (thread, process or wall; default thread, wall when THREADS > 1),
# BENCH_VERBOSE=1 (repetition counts, per-configuration time on stderr),
# THREADS (default 1; sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
# torch.set_num_threads), TORCH_PYTHON, BENCH_TORCH, BENCH_OUT (the build
# directory, default build/bench), MACH_LIBDIR (where libmachrt_f32.a is; default derived from machc's path).
set -eu

# ---- the PyTorch columns --------------------------------------------------------

torch_legend() { # PEAK BLAS
    cat <<EOF
PyTorch (bench/torch_bench.py: the same configuration written idiomatically, the same FLOPs,
timed the same way; torch $("$PY" -c 'import torch; print(torch.__version__)'), $THREADS thread(s), GEMM by $2)
  %peak      GFLOP/s / the sgemm peak of this run (torch.mm, 1024 x 1024, f32): $1 GFLOP/s
  dual       PyTorch: autograd.grad of the outputs with respect to the input alone (the
             parameters not requiring grad), over a graph built before the timed calls
  step us    PyTorch: zero_grad, forward, backward, torch.optim.Adam step
  machc / PyTorch: the ratios of the times (below 1: machc is faster); n/a: no PyTorch model
  spread     the worse of the two sides
EOF
}

# table_row header | table_row PEAK MACHC_RAW_FIELDS... TORCH_FIELDS...
#   machc (bench --raw):  NAME BATCH FLOPS FWD_S DUAL_S STEP_S SPREAD FWD1_S STEP1_S
#   PyTorch (torch_bench.py): FLOPS FWD_S DUAL_S STEP_S SPREAD, or n/a, or error
# With THREADS > 1 the machc side gains its speedups over one thread (fwd x, step x).
table_row() {
    if [ "$1" = header ]; then
        x=""
        [ "$THREADS" -gt 1 ] && x=$(printf ' %6s %6s' "fwd x" "step x")
        printf '\n%-16s %5s | %-*s | %-44s | %-20s |\n' "" "" $((53 + ${#x})) \
            "machc" "PyTorch" "machc / PyTorch"
        printf '%-16s %5s | %10s %7s %5s %8s %10s %8s%s | %10s %7s %5s %8s %10s | %6s %6s %6s | %6s\n' \
            configuration batch "fwd us" GFLOP/s %peak dual/fwd "step us" step/fwd "$x" \
            "fwd us" GFLOP/s %peak dual/fwd "step us" fwd dual step spread
        return
    fi
    peak=$1
    shift
    echo "$@" | awk -v peak="$peak" -v threads="$THREADS" '
        function us(t) { return t * 1e6 }
        function ratio(r) { return sprintf(r >= 0.095 ? "%.2f" : r >= 0.001 ? "%.3f" : "%.0e", r) }
        {
            name = $1; batch = $2; flops = $3; fwd = $4; dual = $5; step = $6; spread = $7
            gf = flops * batch / fwd * 1e-9
            line = sprintf("%-16s %5d | %10.2f %7.2f %4.0f%% %8.2f %10.2f %8.2f", name, batch,
                           us(fwd), gf, 100 * gf / peak, dual / fwd, us(step), step / fwd)
            if (threads > 1)
                line = line sprintf(" %6.2f %6.2f", $8 / fwd, $9 / step)
            line = line " |"
            if (NF < 14) {
                printf "%s %10s %7s %5s %8s %10s | %6s %6s %6s | %5.0f%%\n", line,
                       NF == 10 ? $10 : "error", "", "", "", "", "", "", "", 100 * spread
                next
            }
            tflops = $10; tf = $11; td = $12; ts = $13
            if ($14 > spread) spread = $14
            tg = tflops * batch / tf * 1e-9
            printf "%s %10.2f %7.2f %4.0f%% %8.2f %10.2f | %6s %6s %6s | %5.0f%%%s\n", line,
                   us(tf), tg, 100 * tg / peak, td / tf, us(ts), ratio(fwd / tf), ratio(dual / td),
                   ratio(step / ts),
                   100 * spread, tflops == flops ? "" : "  (FLOPs differ: PyTorch " tflops ")"
        }'
}

# ---- driver ---------------------------------------------------------------------
if [ $# -lt 1 ]; then
    echo "usage: sh bench/run.sh path/to/machc [PATTERN]" >&2
    exit 2
fi
MACHC=$1
PATTERN=${2:-}
case $MACHC in /*) ;; *) MACHC=$(pwd)/$MACHC ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/configs.sh"
OUT=${BENCH_OUT:-$ROOT/build/bench}
CC=${CC:-clang}
BENCH_CFLAGS=${BENCH_CFLAGS:--O3 -march=native}
if [ -z "${MACH_LIBDIR:-}" ]; then
    bindir=$(cd "$(dirname "$MACHC")" && pwd)
    if [ "$bindir" = "$ROOT/bin" ]; then MACH_LIBDIR=$ROOT/build/lib
    else MACH_LIBDIR=$(dirname "$bindir")/lib; fi
fi
mkdir -p "$OUT"

# Threads: one unless asked. With several, the CPU time of one thread no
# longer measures a call, so the clock becomes wall time.
THREADS=${THREADS:-1}
OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
export THREADS OMP_NUM_THREADS OPENBLAS_NUM_THREADS MKL_NUM_THREADS
if [ "$THREADS" -gt 1 ] && [ -z "${BENCH_CLOCK:-}" ]; then
    BENCH_CLOCK=wall
    export BENCH_CLOCK
fi

PY=${TORCH_PYTHON:-/usr/bin/python3}
torch=0
if [ "${BENCH_TORCH:-1}" != 0 ] && "$PY" -c 'import torch' >/dev/null 2>&1; then
    torch=1
fi

clock() { # seconds, with a fraction where date supports %N
    case $(date +%N) in
        *N*) date +%s ;;
        *) date +%s.%N ;;
    esac
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

t0=$(clock)
# The harness, once (f32).
# shellcheck disable=SC2086
# -fno-math-errno: Adam's sqrt vectorises (as in the runtime)
$CC $BENCH_CFLAGS -fno-math-errno -std=c99 -fopenmp -DMACH_F32 -I"$ROOT/runtime" -c -o "$OUT/bench.o" "$ROOT/bench/bench.c"

# Build every selected configuration first, then time them all: a clang run
# does not overlap any measurement.
list=$OUT/configs.txt
bench_configs "$PATTERN" >"$list"
if [ ! -s "$list" ]; then
    echo "bench/run.sh: no configuration name contains '$PATTERN'" >&2
    exit 2
fi
while IFS='|' read -r file name kind batch a1 a2 a3; do
    bench_gen "$kind" "$OUT/$file.mach" "$a1" "$a2" "$a3"
    "$MACHC" -S --dtype f32 "$OUT/$file.mach" -o "$OUT/$file.c"
    # shellcheck disable=SC2086
    # -fopenmp as machc builds binaries: THREADS (OMP_NUM_THREADS) sets the team
    $CC $BENCH_CFLAGS -std=c99 -fopenmp -DMACH_NO_MAIN -I"$ROOT/runtime" -I"$OUT" -o "$OUT/$file" \
        "$OUT/$file.c" "$OUT/bench.o" -L"$MACH_LIBDIR" -lmachrt_f32 -lm
done <"$list"
t1=$(clock)

status=0
if [ $torch = 0 ]; then
    first=1
    while IFS='|' read -r file name kind batch a1 a2 a3; do
        if [ $first = 1 ]; then "$OUT/$file" --header; first=0; fi
        "$OUT/$file" "$name" "$batch" </dev/null || status=1
    done <"$list"
else
    peak=$("$PY" "$ROOT/bench/torch_bench.py" --peak) # "GFLOP/s BLAS"
    blas=${peak#* }
    peak=${peak%% *}
    first=1
    while IFS='|' read -r file name kind batch a1 a2 a3; do
        if [ $first = 1 ]; then
            "$OUT/$file" --legend
            torch_legend "$peak" "$blas"
            table_row header
            first=0
        fi
        m=$("$OUT/$file" --raw "$name" "$batch" </dev/null) || status=1
        t=$("$PY" "$ROOT/bench/torch_bench.py" "$kind" "$batch" "$a1" "$a2" "$a3" </dev/null) ||
            { t=error; status=1; }
        # shellcheck disable=SC2086
        [ -z "$m" ] || table_row "$peak" $m $t
    done <"$list"
    peak2=$("$PY" "$ROOT/bench/torch_bench.py" --peak)
    echo
    echo "sgemm peak (torch.mm 1024^3 f32, $THREADS thread(s), $blas): $peak GFLOP/s at the start, ${peak2%% *} at the end"
    case $blas in
        OpenBLAS|MKL) ;;
        *) echo "warning: PyTorch's GEMM runs on the $blas BLAS, not an optimised one:" \
                "its dense figures mean little (make bench-deps installs libopenblas0)" >&2 ;;
    esac
fi
t2=$(clock)

echo
echo "total $(elapsed "$t0" "$t2") s (building $(elapsed "$t0" "$t1") s, measuring $(elapsed "$t1" "$t2") s)"
exit $status
