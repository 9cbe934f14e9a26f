"""bench/check_torch.py — does the PyTorch model of a benchmark configuration
compute what machc's machine computes? (Not a test of `make test`: PyTorch
is optional. bench/check.sh runs it over the configurations.)

  /usr/bin/python3 bench/check_torch.py BIN KIND BATCH A1 [A2 [A3]]

BIN is the configuration's machine compiled by machc to a binary (f32);
KIND A1 A2 A3 are the fields of its line in bench/configs.sh. It

  1. compares machc's forward FLOPs (`BIN info --json`) with the PyTorch
     model's count (bench/torch_models.py, flops());
  2. draws machc's initial weights (`BIN init --seed 1 --out W.npz`), an input
     X ~ U(-1, 1) of BATCH samples and cotangents G ~ U(-1, 1) for every
     output, runs `BIN forward` and `BIN grad` (the vector-Jacobian product:
     the input's gradient and every parameter's);
  3. loads W.npz into the PyTorch model, runs it on X and back-propagates G,
     in f32 and, as the reference for both sides, in f64;
  4. prints one line:
       FLOPs      machc's count, then `=` when PyTorch's is the same, else `!`
       fwd        max|machc - torch| / max|torch| over the outputs, torch in f32
       dinput     the same for the input gradient
       dparams    the same for the parameter gradients (worst parameter)
       machc/f64  the worst of the three for machc against torch in f64
       torch/f64  the same for torch in f32 against torch in f64
     then `ok` when the FLOPs are equal and fwd and machc/f64 are below 1e-5
     (f32), else `DIFFERS`; exit status 0 / 1. (A parameter gradient sums
     over batch x grid terms: on a large convolution the f32 sides differ
     by more than 1e-5 from each other, and the f64 column says which one
     is off.)

The temporary files go to a directory it removes (TMPDIR).
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

TOL = 1e-5


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"check_torch: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def rel_diff(a, b):
    """max|a - b| / max|b| (0 when both are 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        sys.exit(f"check_torch: shapes differ: machc {a.shape}, torch {b.shape}")
    scale = np.max(np.abs(b)) if b.size else 0.0
    diff = np.max(np.abs(a - b)) if a.size else 0.0
    return diff / scale if scale > 0 else diff


def main(argv):
    if len(argv) < 4:
        sys.exit("usage: check_torch.py BIN KIND BATCH A1 [A2 [A3]]")
    binary, kind, batch = argv[0], argv[1], int(argv[2])
    args = (argv[3:] + ["", ""])[:3]
    torch.manual_seed(0)
    model = tm.build(kind, *args)
    torch.set_num_threads(1)

    info = json.loads(run(binary, "info", "--json"))
    if info["dtype"] != "f32":
        sys.exit("check_torch: the binary must be f32 (machc --dtype f32)")
    flops_machc, flops_torch = info["forward_flops"], tm.flops(model)

    rng = np.random.default_rng(1)
    names = [o["name"] for o in info["outputs"]]
    if names != tm.output_names(model):
        sys.exit(f"check_torch: machc's outputs {names} are not the model's {tm.output_names(model)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = lambda n: os.path.join(tmp, n)
        run(binary, "init", "--seed", "1", "--out", path("w.npz"))
        x = rng.uniform(-1, 1, [batch] + tm.input_shape(model)).astype(np.float32)
        np.save(path("x.npy"), x)
        run(binary, "forward", "--weights", path("w.npz"), "--input", path("x.npy"),
            "--output", path("y.npz"))
        with np.load(path("y.npz")) as z:
            ys = [z[n] for n in names]
        gs = [rng.uniform(-1, 1, y.shape).astype(np.float32) for y in ys]
        cot = []
        for i, (n, g) in enumerate(zip(names, gs)):
            np.save(path(f"g{i}.npy"), g)
            cot += ["--cotangent", f"{n}={path(f'g{i}.npy')}"]
        run(binary, "grad", "--weights", path("w.npz"), "--input", path("x.npy"),
            *cot, "--output", path("d.npz"))
        with np.load(path("d.npz")) as z:
            d = {k: z[k] for k in z.files}
        with np.load(path("w.npz")) as z:
            w = {k: z[k] for k in z.files}
    m32 = run_torch(model, w, x, gs, torch.float32)
    m64 = run_torch(model, w, x, gs, torch.float64)  # the reference for both sides
    machc = (ys, d[info["inputs"][0]["name"]], {k: d[k] for k in m32[2]})

    def worst(a, b):  # (outputs, input gradient, parameter gradients)
        return (max(rel_diff(u, v) for u, v in zip(a[0], b[0])), rel_diff(a[1], b[1]),
                max(rel_diff(a[2][k], b[2][k]) for k in b[2]))

    fwd, dinput, dparams = worst(machc, m32)
    machc_err, torch_err = max(worst(machc, m64)), max(worst(m32, m64))
    good = flops_machc == flops_torch and fwd < TOL and machc_err < TOL
    same = flops_machc == flops_torch
    print(f"{flops_machc:>11.0f} {'=' if same else '!'}  {fwd:8.1e} {dinput:8.1e} {dparams:8.1e}  "
          f"{machc_err:9.1e} {torch_err:9.1e}  {'ok' if good else 'DIFFERS'}"
          f"{'' if same else f' (PyTorch counts {flops_torch} FLOPs)'}")
    return 0 if good else 1


def run_torch(model, weights, x, gs, dtype):
    """The model in dtype with machc's weights, on x, back-propagating the
    cotangents gs: (outputs, input gradient, parameter gradients as machc's)."""
    tm.load_machc(model, weights)
    m = model.to(dtype)
    for p in m.parameters():
        p.grad = None
    xt = torch.from_numpy(x).to(dtype).requires_grad_()
    outs = m(xt)
    torch.autograd.backward(outs, [torch.from_numpy(g).to(dtype) for g in gs])
    return ([o.detach().numpy() for o in outs], xt.grad.numpy(), tm.param_grads_as_machc(m))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
