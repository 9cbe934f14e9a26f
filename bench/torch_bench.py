"""bench/torch_bench.py — the PyTorch side of `make bench` (bench/run.sh).

  /usr/bin/python3 bench/torch_bench.py KIND BATCH A1 [A2 [A3]]
  /usr/bin/python3 bench/torch_bench.py --peak

KIND A1 A2 A3 are the fields of a configuration line of bench/configs.sh;
the model is bench/torch_models.py's (idiomatic: one weight tensor per
block, torch.optim.Adam), computing the same FLOPs as machc's machine. It
times, as bench/bench.c does for machc, interleaved round by round:

  fwd   the forward pass under torch.inference_mode()
  dual  the backward pass without parameter gradients: the parameters do
        not require grad, the input does; torch.autograd.grad of the outputs
        with respect to the input, cotangents U(-1, 1) / batch, over a graph
        built (untimed) before the timed calls
  step  a training step: zero_grad, forward, backward of the same
        cotangents (their sign alternating from step to step, as bench.c's),
        Adam(lr 1e-3) step

and prints one line for bench/run.sh: FLOPS_PER_SAMPLE FWD_S DUAL_S STEP_S
SPREAD (seconds per call, the minimum over the rounds; SPREAD the worst
(max - min) / min), or `n/a` when the configuration has no PyTorch model
(a kind bench/torch_models.py does not write).

--peak prints the GFLOP/s of torch.mm on 1024 x 1024 f32 matrices (2 *
1024^3 FLOPs a call), timed the same way: the sgemm peak that bench/run.sh
divides by; then the BLAS library that ran it. (Debian's reference BLAS is
some 20 times slower than OpenBLAS: PyTorch's dense layers are only worth
comparing with libopenblas0 installed, which `make bench-deps` does.)

The same environment as bench.c: BENCH_MIN_TIME (0.2 s), BENCH_MIN_REPS
(20), BENCH_MAX_TIME (1 s) for the calibration (wall time), BENCH_ROUNDS
(7), BENCH_CLOCK (thread: time.thread_time(), the default; process:
time.process_time(); wall), and THREADS (torch.set_num_threads, default 1).
"""

import math
import os
import sys
import time

# Before torch loads its libraries: OpenBLAS (pthread builds) ignores
# torch.set_num_threads and would run a GEMM on every core, where the
# thread-CPU clock sees only the calling thread's share.
THREADS = int(os.environ.get("THREADS") or 1)
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import torch  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

CLOCKS = {"thread": time.thread_time, "process": time.process_time, "wall": time.perf_counter}


def env_num(name, default):
    v = os.environ.get(name, "")
    return float(v) if v else default


class Op:
    """One timed operation: prepare() runs untimed before a measurement,
    call() is what is timed, finish() runs untimed after it."""

    def __init__(self, call, prepare=None, finish=None):
        self.call, self.prepare, self.finish = call, prepare, finish

    def measure(self, n, clock):
        """(time on clock, wall time) of n calls."""
        if self.prepare:
            self.prepare()
        w0, t0 = time.perf_counter(), clock()
        for _ in range(n):
            self.call()
        t1, w1 = clock(), time.perf_counter()
        if self.finish:
            self.finish()
        return t1 - t0, w1 - w0


def calibrate(op, clock, min_time, max_time, min_reps):
    """bench.c's rule: n calls take >= min_time (wall) and n >= min_reps, but
    stay below max_time when one call allows; n grows at most tenfold."""
    n = 1
    while True:
        _, wall = op.measure(n, clock)
        per = wall / n
        want = math.ceil(1.05 * min_time / per) if per > 0 else 10 * n
        want = max(want, min_reps)
        cap = math.floor(max_time / per) if per > 0 else want
        if want > cap:
            want = max(cap, 1)
        if n >= want:
            return n
        n = 10 * n if want > 10 * n else want


def time_ops(ops):
    """Minimum time per call of each op over interleaved rounds, and the
    worst spread (max - min) / min."""
    clock = CLOCKS.get(os.environ.get("BENCH_CLOCK") or "thread")
    if clock is None:
        sys.exit("torch_bench: BENCH_CLOCK must be thread, process or wall")
    min_time, max_time = env_num("BENCH_MIN_TIME", 0.2), env_num("BENCH_MAX_TIME", 1.0)
    min_reps = max(1, int(env_num("BENCH_MIN_REPS", 20)))
    rounds = min(99, max(1, int(env_num("BENCH_ROUNDS", 7))))
    reps = [calibrate(op, clock, min_time, max_time, min_reps) for op in ops]
    times = [[] for _ in ops]
    for r in range(rounds):  # the starting op rotates from round to round
        for k in range(len(ops)):
            i = (r + k) % len(ops)
            t, _ = ops[i].measure(reps[i], clock)
            times[i].append(t / reps[i])
    best = [min(t) for t in times]
    spread = max((max(t) - min(t)) / min(t) if min(t) > 0 else 0 for t in times)
    return best, spread


def peak():
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    c = torch.empty(1024, 1024)
    (t,), _ = time_ops([Op(lambda: torch.mm(a, b, out=c))])
    return 2 * 1024 ** 3 / t * 1e-9


def blas_library():
    """Which BLAS this process loaded (torch.mm's sgemm; Debian's libblas.so.3
    is an alternative): OpenBLAS, MKL, reference (netlib) or unknown."""
    try:
        with open("/proc/self/maps") as f:
            libs = " ".join(os.path.realpath(line.split()[-1]) for line in f
                            if "blas" in line.split()[-1].lower() or "mkl" in line)
    except OSError:
        libs = ""
    for key, name in (("openblas", "OpenBLAS"), ("mkl", "MKL"), ("/blas/", "reference")):
        if key in libs.lower():
            return name
    return "unknown"


def bench(kind, batch, args):
    try:
        model = tm.build(kind, *args)
    except NotImplementedError:
        return None
    gen = torch.Generator().manual_seed(0)
    shape = [batch] + tm.input_shape(model)
    u = torch.rand(shape, generator=gen) * 2 - 1
    with torch.no_grad():
        outs = model(u)
    cots = [(torch.rand(o.shape, generator=gen) * 2 - 1) / batch for o in outs]
    signed = [cots, [-c for c in cots]]
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    state = {"t": 0, "graph": None}

    def forward():
        with torch.inference_mode():
            model(u)

    def dual_prepare():  # the graph of a forward pass, input requiring grad only
        for p in params:
            p.requires_grad_(False)
        ud = u.detach().requires_grad_()
        state["graph"] = (ud, model(ud))

    def dual():
        ud, o = state["graph"]
        torch.autograd.grad(o, ud, cots, retain_graph=True)

    def dual_finish():
        state["graph"] = None
        for p in params:
            p.requires_grad_(True)

    def step():
        opt.zero_grad(set_to_none=True)
        o = model(u)
        c = signed[state["t"] & 1]
        # outputs that do not depend on a parameter (the DenseMachine's
        # x[0] = act(input)) have no graph: nothing to propagate
        pairs = [(y, g) for y, g in zip(o, c) if y.requires_grad]
        torch.autograd.backward([y for y, _ in pairs], [g for _, g in pairs])
        opt.step()
        state["t"] += 1

    best, spread = time_ops([Op(forward), Op(dual, dual_prepare, dual_finish), Op(step)])
    return tm.flops(model), best, spread


def main(argv):
    torch.set_num_threads(THREADS)
    if argv == ["--peak"]:
        print(f"{peak():.2f} {blas_library()}")
        return 0
    if len(argv) < 3:
        sys.exit("usage: torch_bench.py KIND BATCH A1 [A2 [A3]] | --peak")
    r = bench(argv[0], int(argv[1]), (argv[2:] + ["", ""])[:3])
    if r is None:
        print("n/a")
        return 0
    flops, (fwd, dual, step), spread = r
    print(f"{flops} {fwd:.6e} {dual:.6e} {step:.6e} {spread:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
