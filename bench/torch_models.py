"""bench/torch_models.py — the benchmark configurations as idiomatic PyTorch.

Used by bench/torch_bench.py (timings) and bench/check_torch.py (agreement
with machc). A configuration is given by the fields of its line in
bench/configs.sh (KIND, then the generator's arguments A1 A2 A3, in the
same notation), and build() returns the PyTorch model computing the same
function with the same FLOPs as the machine bench/configs.sh generates:

  dense      the paper's DenseMachine: x[0] = act(u), and block i one
             nn.Linear (no bias) over the concatenation of the blocks
             before it, x[i] = act(W_i cat(x[0..i])); every block an output
  conv       the paper's ConvMachine: the same with one nn.Conv1d/2d/3d per
             block (cross-correlation, the paper's pads, no bias)
  cnn        3x3 `same` Conv2d + bias + act, AvgPool2d(2) per stage, then
             nn.Linear layers with bias, act on all but the last
  mlp        nn.Linear layers with bias, act on all but the last
  recurrent  the paper's RecurMachine, solved as machc solves it: over
             chunks of `timeblock` steps, block by block; block i is two
             nn.Conv1d (no bias, no padding) over the history: one reading
             the blocks before it at lags 0 ..= pad, one reading itself and
             the later blocks at lags timeblock ..= pad (from chunks already
             solved; absent when timeblock > pad)

Every model's forward takes the input batch ([B, C, grid...] or [B, D],
float32) and returns the list of output blocks in machc's order. flops()
counts as machc does (compiler/ir.c, ir_forward_flops): a multiply-add 2 (a
padded tap too), a bias or an activation 1 per value, average pooling one
per tap; load_machc() copies the parameters of a machc weights .npz (as
`BIN init` writes it) into the model, and param_grads_as_machc() maps the
model's parameter gradients back to machc's parameter names and layouts.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTS = {
    "identity": lambda y: y,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "softplus": F.softplus,
    "gelu": F.gelu,  # exact (erf), as machc's
    "sin": torch.sin,
}


def expand_dims(text):
    """'2*3,4' -> [2, 2, 2, 4] (bench/configs.sh's expand_dims)."""
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if "*" in part:
            n, k = part.split("*")
            out += [int(n)] * int(k)
        else:
            out.append(int(part))
    return out


def split_at(text):
    """'1,1,1,1 @ 28,28' -> ([1, 1, 1, 1], [28, 28])."""
    left, right = text.split("@")
    return expand_dims(left), expand_dims(right)


def activation(name):
    if name not in ACTS:
        raise ValueError(f"activation '{name}' has no PyTorch counterpart here")
    return ACTS[name]


class DenseMachine(nn.Module):
    """dims [d0, ..., dn-1]; block i > 0: nn.Linear(sum(dims[:i]) -> dims[i])."""

    def __init__(self, dims, act):
        super().__init__()
        self.dims, self.act_name, self.act = dims, act, activation(act)
        self.blocks = nn.ModuleList(
            nn.Linear(sum(dims[:i]), dims[i], bias=False) for i in range(1, len(dims)))

    def forward(self, u):  # u: [B, d0]
        xs = [self.act(u)]
        for lin in self.blocks:
            xs.append(self.act(lin(torch.cat(xs, dim=1))))  # [B, sum(dims[:i])] -> [B, di]
        return xs


class ConvMachine(nn.Module):
    """dims, pads flat per axis [p0, p1, q0, q1, ...], grid: block i > 0 is
    one ConvNd(sum(dims[:i]) -> dims[i], kernel p0 + p1 + 1 per axis)."""

    def __init__(self, dims, act, pads, grid):
        super().__init__()
        nd = len(grid)
        if len(pads) != 2 * nd or nd > 3:
            raise ValueError("conv: two pads per grid axis, 1 to 3 axes")
        self.dims, self.grid, self.act_name, self.act = dims, grid, act, activation(act)
        self.kernel = [pads[2 * a] + pads[2 * a + 1] + 1 for a in range(nd)]
        sym = all(pads[2 * a] == pads[2 * a + 1] for a in range(nd))
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1]
        self.blocks = nn.ModuleList(
            conv(sum(dims[:i]), dims[i], self.kernel, bias=False,
                 padding=[pads[2 * a] for a in range(nd)] if sym else 0)
            for i in range(1, len(dims)))
        # F.pad wants the pads of the LAST axis first
        self.fpad = None if sym else [p for a in reversed(range(nd))
                                      for p in (pads[2 * a], pads[2 * a + 1])]

    def forward(self, u):  # u: [B, d0, grid...]
        xs = [self.act(u)]
        for conv in self.blocks:
            x = torch.cat(xs, dim=1)  # [B, sum(dims[:i]), grid...]
            if self.fpad is not None:
                x = F.pad(x, self.fpad)
            xs.append(self.act(conv(x)))
        return xs


class CNN(nn.Module):
    """chans [c0, c1, ...] @ grid: per stage Conv2d(3x3, same) + bias + act and
    AvgPool2d(2); then nn.Linear layers with bias (act on all but the last)."""

    def __init__(self, chans, grid, act, widths):
        super().__init__()
        self.act_name, self.act = act, activation(act)
        self.chans, self.grid, self.widths = chans, grid, widths
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i - 1], chans[i], 3, padding=1) for i in range(1, len(chans)))
        self.pool = nn.AvgPool2d(2)
        g = [n // 2 ** (len(chans) - 1) for n in grid]
        ins = [chans[-1] * math.prod(g)] + widths[:-1]
        self.denses = nn.ModuleList(nn.Linear(i, o) for i, o in zip(ins, widths))

    def forward(self, x):  # x: [B, c0, H, W]
        for conv in self.convs:
            x = self.pool(self.act(conv(x)))
        x = torch.flatten(x, 1)  # [B, C, h, w] -> [B, C*h*w], machc's layout too
        for lin in self.denses[:-1]:
            x = self.act(lin(x))
        return [self.denses[-1](x)]


class MLP(nn.Module):
    """dims [d0, ..., out]: nn.Linear layers with bias, act on all but the last."""

    def __init__(self, dims, act):
        super().__init__()
        self.dims, self.act_name, self.act = dims, act, activation(act)
        self.denses = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, x):  # x: [B, d0]
        for lin in self.denses[:-1]:
            x = self.act(lin(x))
        return [self.denses[-1](x)]


class RecurMachine(nn.Module):
    """dims, pad, timeblock, length: block i reads the blocks before it
    through `past[i]` (kernel pad + 1, lags pad .. 0 from tap 0 on) and
    itself and the blocks after it through `later[i]` (kernel
    pad - timeblock + 1, lags pad .. timeblock), one chunk of timeblock
    steps at a time. x[0] = act(input + later[0](...))."""

    def __init__(self, dims, act, pad, timeblock, length):
        super().__init__()
        self.dims, self.act_name, self.act = dims, act, activation(act)
        self.pad, self.tb, self.grid = pad, timeblock, [length]
        n = sum(dims)
        self.past = nn.ModuleList(
            nn.Conv1d(sum(dims[:i]), dims[i], pad + 1, bias=False) for i in range(1, len(dims)))
        self.later = nn.ModuleList(
            nn.Conv1d(n - sum(dims[:i]), dims[i], pad - timeblock + 1, bias=False)
            for i in range(len(dims))) if timeblock <= pad else None

    def forward(self, u):  # u: [B, d0, T]
        B, T, pad, tb = u.shape[0], u.shape[2], self.pad, self.tb
        # the history of each block, [B, di, pad + steps solved]: pad zeros
        # first, so step t is at index t + pad
        zs = [u.new_zeros(B, d, pad) for d in self.dims]
        for t0 in range(0, T, tb):
            t1 = min(t0 + tb, T)
            for i in range(len(self.dims)):
                y = u[:, :, t0:t1] if i == 0 else \
                    self.past[i - 1](torch.cat([z[:, :, t0:t1 + pad] for z in zs[:i]], 1))
                if self.later is not None:  # steps t0 - pad .. t1 - 1 - tb: earlier chunks
                    y = y + self.later[i](torch.cat([z[:, :, t0:t1 + pad - tb] for z in zs[i:]], 1))
                zs[i] = torch.cat([zs[i], self.act(y)], 2)
        return [z[:, :, pad:] for z in zs]


def build(kind, a1, a2="", a3=""):
    """The model of a configuration line's KIND A1 A2 A3."""
    if kind == "dense":
        return DenseMachine(expand_dims(a1), a2)
    if kind == "conv":
        pads, grid = split_at(a3)
        return ConvMachine(expand_dims(a1), a2, pads, grid)
    if kind == "cnn":
        chans, grid = split_at(a1)
        if len(grid) != 2:
            raise ValueError("cnn: a 2-D grid")
        return CNN(chans, grid, a2, expand_dims(a3))
    if kind == "mlp":
        return MLP(expand_dims(a1), a2)
    if kind == "recurrent":
        (pad, tb), (length,) = split_at(a3)
        return RecurMachine(expand_dims(a1), a2, pad, tb, length)
    raise ValueError(f"unknown configuration kind '{kind}'")


def input_shape(model):
    """The shape of one sample of the model's input."""
    if isinstance(model, DenseMachine):
        return [model.dims[0]]
    if isinstance(model, (ConvMachine, RecurMachine)):
        return [model.dims[0]] + model.grid
    if isinstance(model, CNN):
        return [model.chans[0]] + model.grid
    return [model.dims[0]]


def flops(model):
    """Forward FLOPs per sample, counted as machc counts them."""
    act = lambda m, n: 0 if m.act_name == "identity" else n
    if isinstance(model, DenseMachine):
        d = model.dims
        return sum(2 * sum(d[:i]) * d[i] for i in range(1, len(d))) + act(model, sum(d))
    if isinstance(model, ConvMachine):
        d, pts, k = model.dims, math.prod(model.grid), math.prod(model.kernel)
        return sum(2 * k * sum(d[:i]) * d[i] * pts for i in range(1, len(d))) + act(model, sum(d) * pts)
    if isinstance(model, RecurMachine):
        d, T = model.dims, model.grid[0]
        f = sum(2 * (model.pad + 1) * sum(d[:i]) * d[i] * T for i in range(1, len(d)))
        if model.later is not None:
            k = model.pad - model.tb + 1
            f += sum(2 * k * sum(d[i:]) * d[i] * T for i in range(len(d)))
        return f + act(model, sum(d) * T)
    if isinstance(model, CNN):
        f, g = 0, list(model.grid)
        for c_in, c_out in zip(model.chans[:-1], model.chans[1:]):
            n = c_out * math.prod(g)
            f += 2 * 9 * c_in * n + n + act(model, n)  # conv, bias, act
            g = [a // 2 for a in g]
            f += 4 * c_out * math.prod(g)  # pooling: 4 taps per value
        for i, lin in enumerate(model.denses):
            f += 2 * lin.in_features * lin.out_features + lin.out_features
            if i < len(model.denses) - 1:
                f += act(model, lin.out_features)
        return f
    if isinstance(model, MLP):
        f = 0
        for i, lin in enumerate(model.denses):
            f += 2 * lin.in_features * lin.out_features + lin.out_features
            if i < len(model.denses) - 1:
                f += act(model, lin.out_features)
        return f
    raise TypeError(type(model))


# ---- machc's parameters ------------------------------------------------------------
# machc lays a dense weight out [in, out] and a conv kernel [k..., in, out];
# nn.Linear wants [out, in] and nn.ConvNd [out, in, k...]. The paper's
# machines share ONE tensor m.W, of which block i reads rows 0 .. lo (the
# blocks before it) and columns lo .. lo + dims[i].

def _conv_to_torch(w):  # [k..., in, out] -> [out, in, k...]
    nd = w.dim() - 2
    return w.permute(nd + 1, nd, *range(nd))


def _conv_to_machc(w):  # [out, in, k...] -> [k..., in, out]
    nd = w.dim() - 2
    return w.permute(*range(2, nd + 2), 1, 0)


def _machine_slices(model):
    """(block module, lo, hi) per block i > 0 of a Dense/ConvMachine."""
    d = model.dims
    return [(blk, sum(d[:i]), sum(d[:i]) + d[i]) for i, blk in enumerate(model.blocks, 1)]


def _recur_slices(model):
    """(conv, taps of W, first row, columns lo, hi) per conv of a
    RecurMachine's block i (columns lo .. hi of m.W): past[i] reads rows
    0 .. lo at every tap, later[i] rows lo .. n at taps 0 .. pad - timeblock
    (the lags >= timeblock)."""
    d, out = model.dims, []
    for i in range(len(d)):
        lo, hi = sum(d[:i]), sum(d[:i + 1])
        if i > 0:
            out.append((model.past[i - 1], slice(0, model.pad + 1), 0, lo, hi))
        if model.later is not None:
            out.append((model.later[i], slice(0, model.pad - model.tb + 1), lo, lo, hi))
    return out


def _own_weights(model):
    """(machc weight name, bias name, layer, is_conv) for the CNN and MLP,
    named as bench/configs.sh's generators name the blocks."""
    out = []
    if isinstance(model, CNN):
        src = "img"
        for i, conv in enumerate(model.convs, 1):
            out.append((f"W_c{i}_{src}", f"b_c{i}", conv, True))
            src = f"p{i}"
    else:
        src = "x"
    for i, lin in enumerate(model.denses, 1):
        dst = "y" if i == len(model.denses) else f"h{i}"
        out.append((f"W_{dst}_{src}", f"b_{dst}", lin, False))
        src = dst
    return out


def load_machc(model, weights):
    """Copy machc's parameters (a dict name -> numpy array) into the model."""
    t = {k: torch.from_numpy(v).float() for k, v in weights.items()}
    with torch.no_grad():
        if isinstance(model, (DenseMachine, ConvMachine)):
            W = t["m.W"]  # [n, n] or [k..., n, n]
            for blk, lo, hi in _machine_slices(model):
                w = W[..., :lo, lo:hi]  # [k..., in, out]
                blk.weight.copy_(w.T if isinstance(model, DenseMachine) else _conv_to_torch(w))
        elif isinstance(model, RecurMachine):
            W = t["m.W"]  # [pad + 1, n, n]
            for conv, taps, row, lo, hi in _recur_slices(model):
                conv.weight.copy_(_conv_to_torch(W[taps, row:row + conv.in_channels, lo:hi]))
        else:
            for wname, bname, layer, is_conv in _own_weights(model):
                w = t[wname]
                layer.weight.copy_(_conv_to_torch(w) if is_conv else w.T)
                layer.bias.copy_(t[bname])


def param_grads_as_machc(model):
    """The parameter gradients (after a backward) as {machc name: array} in
    machc's layouts. For a shared m.W only the slices the machine reads are
    filled; the rest is 0, as machc's gradient of the unread entries is."""
    out = {}
    if isinstance(model, (DenseMachine, ConvMachine)):
        n = sum(model.dims)
        k = [] if isinstance(model, DenseMachine) else model.kernel
        G = torch.zeros(k + [n, n], dtype=model.blocks[0].weight.dtype)
        for blk, lo, hi in _machine_slices(model):
            g = blk.weight.grad
            G[..., :lo, lo:hi] = g.T if isinstance(model, DenseMachine) else _conv_to_machc(g)
        out["m.W"] = G.numpy()
    elif isinstance(model, RecurMachine):
        n = sum(model.dims)
        G = torch.zeros(model.pad + 1, n, n, dtype=model.past[0].weight.dtype)
        for conv, taps, row, lo, hi in _recur_slices(model):
            G[taps, row:row + conv.in_channels, lo:hi] = _conv_to_machc(conv.weight.grad)
        out["m.W"] = G.numpy()
    else:
        for wname, bname, layer, is_conv in _own_weights(model):
            g = layer.weight.grad
            out[wname] = (_conv_to_machc(g) if is_conv else g.T).numpy()
            out[bname] = layer.bias.grad.numpy()
    return out


def output_names(model):
    """machc's names of the output blocks, in order."""
    if isinstance(model, (DenseMachine, ConvMachine, RecurMachine)):
        return [f"m.x[{i}]" for i in range(len(model.dims))]
    return ["y"]
