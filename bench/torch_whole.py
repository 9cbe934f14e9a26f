"""bench/torch_whole.py — the PyTorch side of `make bench-whole` (bench/whole.sh).

  /usr/bin/python3 bench/torch_whole.py train   KIND BATCH A1 A2 A3 X.npy T.npy W.pt
  /usr/bin/python3 bench/torch_whole.py forward KIND BATCH A1 A2 A3 X.npy Y.npy

What a user of PyTorch writes for what `BIN train` and `BIN forward` do, run
as a whole process (bench/whole.sh times it from outside: CPU time and peak
memory of everything, the imports included). KIND A1 A2 A3 are a line of
bench/whole.sh's configurations: bench/torch_models.py's model, where the
kinds `densero` and `convro` are the paper's DenseMachine and ConvMachine
read out as bench/whole.sh's machines read them out:

  densero   nn.Linear(sum(dims) -> 10, bias) over all the blocks, concatenated
  convro    the last block averaged over the grid, then nn.Linear(C -> 10, bias)

train: the samples and labels loaded with numpy.load, one epoch of
torch.optim.Adam (lr 1e-3) on the softmax cross-entropy, in shuffled
minibatches of BATCH (torch.randperm), the weights saved with torch.save.
forward: numpy.load, then minibatches of BATCH under torch.no_grad(), the
outputs collected and written with numpy.save. One thread
(torch.set_num_threads(1); OMP/OpenBLAS/MKL told before torch loads).
"""

import os
import sys

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

CLASSES = 10


class Readout(nn.Module):
    """A Dense/ConvMachine and its readout to CLASSES logits."""

    def __init__(self, machine, last_only):
        super().__init__()
        self.machine, self.last_only = machine, last_only
        width = machine.dims[-1] if last_only else sum(machine.dims)
        self.out = nn.Linear(width, CLASSES)

    def forward(self, u):
        xs = self.machine(u)
        if self.last_only:  # global average pooling of the last block
            h = xs[-1].mean(dim=tuple(range(2, xs[-1].dim())))
        else:
            h = torch.cat(xs, dim=1)
        return self.out(h)


class Single(nn.Module):
    """The CNN or MLP, returning its one output rather than a list."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[0]


def build(kind, a1, a2, a3):
    if kind == "densero":
        return Readout(tm.build("dense", a1, a2), last_only=False)
    if kind == "convro":
        return Readout(tm.build("conv", a1, a2, a3), last_only=True)
    return Single(tm.build(kind, a1, a2, a3))


def sample_shape(model):
    inner = model.machine if isinstance(model, Readout) else model.model
    return tm.input_shape(inner)


def main(argv):
    if not ((argv[:1] == ["train"] and len(argv) == 9) or
            (argv[:1] == ["forward"] and len(argv) == 8)):
        sys.exit(__doc__.split("\n\n")[1])
    cmd, kind, batch, a1, a2, a3, xpath, second = argv[:8]
    batch = int(batch)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build(kind, a1, a2, a3)
    x = np.load(xpath)  # [N, ...] float32
    x = torch.from_numpy(x).reshape([x.shape[0]] + sample_shape(model))
    n = x.shape[0]
    if cmd == "train":
        t = torch.from_numpy(np.load(second).astype(np.int64))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        perm = torch.randperm(n)
        total = 0.0
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), t[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        torch.save(model.state_dict(), argv[8])
        print(f"loss {total / n:.6g}")
    else:
        model.eval()
        outs = []
        with torch.no_grad():
            for s in range(0, n, batch):
                outs.append(model(x[s:s + batch]))
        np.save(second, torch.cat(outs).numpy())


if __name__ == "__main__":
    main(sys.argv[1:])
