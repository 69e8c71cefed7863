"""ember's networks as torch.nn.Modules, with ember's state_dict names (lib/include/ember/net.h).

  resnet: proj = Linear(in_x + in_y, W) (input columns x first, then y); depth/2 blocks, block b
          computes h = h + blocks[b][1](relu(blocks[b][0](relu(h)))); out = Linear(W, out), no
          final activation (IBC's pre-activation ResNet).
  mlp:    hidden.0 = Linear(in_x + in_y, W), hidden.i = Linear(W, W) for i < depth, ReLU after
          each; out = Linear(W, out).

out is 1 for an energy net and y_dim for the MSE regressor (in_y = 0). Late fusion as in ember:
the first layer is W_x x + b, computed once per query (fuse_x), plus W_y y for each of the
query's candidates (energy). Spectral normalisation (ember_sn_layer: every dense layer but the
first and the output) keeps PyTorch's names weight_orig, weight_u, weight_v and ember's
semantics: one power iteration per training step (v first, then u; the trainer calls it), weight = weight_orig /
(u^T weight_orig v), u and v starting at ember_sn_init's deterministic vectors.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = ("resnet", "mlp")


def _normalise(v):
    s = torch.dot(v.double(), v.double())
    return (v.double() * (1.0 / math.sqrt(s) if s > 0 else 0.0)).float()


class SNLinear(nn.Module):
    """nn.Linear with spectral normalisation, as ember trains it (lib/src/spectral.c)."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_orig = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.register_buffer("weight_u", torch.empty(out_features))
        self.register_buffer("weight_v", torch.empty(in_features))
        b = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.weight_orig.uniform_(-b, b)
            self.bias.uniform_(-b, b)
        self.reset_vectors()

    def reset_vectors(self):
        """u and v at ember_sn_init's start: 1 + 0.01 (i % 7) and 1 + 0.01 (j % 5), normalised."""
        with torch.no_grad():
            u = torch.tensor([1.0 + 0.01 * (i % 7) for i in range(self.out_features)])
            v = torch.tensor([1.0 + 0.01 * (j % 5) for j in range(self.in_features)])
            self.weight_u.copy_(_normalise(u.float()))
            self.weight_v.copy_(_normalise(v.float()))

    @torch.no_grad()
    def power_iteration(self):
        """One iteration of ember_sn_power_iteration on weight_orig (double sums)."""
        w = self.weight_orig.detach().double()
        v = F.normalize(w.t() @ self.weight_u.double(), dim=0, eps=0.0).float()
        u = F.normalize(w @ v.double(), dim=0, eps=0.0).float()
        self.weight_v.copy_(torch.nan_to_num(v))
        self.weight_u.copy_(torch.nan_to_num(u))

    def sigma(self):
        """u^T W v, differentiable in W (u, v constant), as PyTorch's spectral_norm."""
        return torch.dot(self.weight_u, torch.mv(self.weight_orig, self.weight_v))

    @property
    def weight(self):
        return self.weight_orig / self.sigma()

    def forward(self, h):
        # the power iteration is the trainer's, once per step (EmberModel.sn_power_iteration),
        # as ember's: a Langevin step runs the net many times
        return F.linear(h, self.weight, self.bias)


def _linear(i, o, sn):
    if sn:
        return SNLinear(i, o)
    # nn.Linear's default init is ember_net_init_params' distribution: U(+-1/sqrt(fan_in))
    # for weight and bias alike
    return nn.Linear(i, o)


class EnergyNet(nn.Module):
    """One ember network: E(x, y) (out = 1) or, with in_y = 0, the MSE regressor f(x)."""

    def __init__(self, in_x, in_y, width, depth, arch="resnet", out=1, spectral_norm=False):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError("arch must be resnet or mlp, got %r" % (arch,))
        if in_x < 1 or in_y < 0 or width < 1 or depth < 1 or out < 1:
            raise ValueError("bad network shape: in_x %d, in_y %d, width %d, depth %d, out %d"
                             % (in_x, in_y, width, depth, out))
        if arch == "resnet" and (depth < 2 or depth % 2):
            raise ValueError("resnet depth must be even and >= 2, got %d" % depth)
        self.in_x, self.in_y, self.width, self.depth, self.arch = in_x, in_y, width, depth, arch
        self.n_out, self.spectral_norm = out, bool(spectral_norm)
        if arch == "resnet":
            self.proj = nn.Linear(in_x + in_y, width)
            self.blocks = nn.ModuleList(
                nn.ModuleList([_linear(width, width, spectral_norm), _linear(width, width, spectral_norm)])
                for _ in range(depth // 2))
        else:
            self.hidden = nn.ModuleList(
                [nn.Linear(in_x + in_y, width)] +
                [_linear(width, width, spectral_norm) for _ in range(depth - 1)])
        self.out = nn.Linear(width, out)

    def first(self):
        return self.proj if self.arch == "resnet" else self.hidden[0]

    def layers(self):
        """(name, module) of every dense layer in ember's order (ember_net_layer_name)."""
        if self.arch == "resnet":
            yield "proj", self.proj
            for b, (l0, l1) in enumerate(self.blocks):
                yield "blocks.%d.0" % b, l0
                yield "blocks.%d.1" % b, l1
        else:
            for i, layer in enumerate(self.hidden):
                yield "hidden.%d" % i, layer
        yield "out", self.out

    def fuse_x(self, x):
        """x: (Q, in_x) -> W_x x + b: (Q, width), once per query."""
        layer = self.first()
        return F.linear(x, layer.weight[:, :self.in_x], layer.bias)

    def trunk(self, h):
        """The network after the first layer's linear part: h (..., width), a tensor of the
        caller's that it may overwrite, -> (..., out)."""
        inplace = not torch.is_grad_enabled()  # no graph to keep: update h in place
        if self.arch == "resnet":
            for l0, l1 in self.blocks:
                r = l1(torch.relu_(l0(torch.relu(h))))
                h = h.add_(r) if inplace else h + r
        else:
            h = torch.relu_(h) if inplace else torch.relu(h)
            for layer in self.hidden[1:]:
                h = torch.relu_(layer(h))
        return self.out(h)

    def energy(self, hx, y):
        """hx: (Q, width) from fuse_x, y: (Q, S, in_y) -> energies (Q, S)."""
        wy = self.first().weight[:, self.in_x:].t()  # (in_y, width)
        # hx + y W_y^T as one batched GEMM: several times faster than F.linear for a small in_y
        h = torch.baddbmm(hx.unsqueeze(1), y, wy.expand(y.shape[0], -1, -1))
        return self.trunk(h).squeeze(-1)

    def forward(self, x, y=None):
        """Energy net: x (Q, in_x), y (Q, S, in_y) -> (Q, S). Regressor (in_y = 0): x -> (Q, out)."""
        hx = self.fuse_x(x)
        if self.in_y == 0:
            return self.trunk(hx)
        return self.energy(hx, y)

    def row_macs(self):
        """Multiply-adds per candidate row, the x part of the first layer excluded
        (ember_net_row_macs)."""
        hidden = self.depth if self.arch == "resnet" else self.depth - 1
        return self.in_y * self.width + hidden * self.width * self.width + self.width * self.n_out
