"""Cross-check an ember image model against PyTorch: rebuild its encoder from the checkpoint's
encoder.conv.L tensors as nn.Conv2d layers (OIHW, no padding), the spatial soft-argmax or pooling
head, and the energy network (python/ember_torch's EnergyNet), then compare energies with
`ember predict --energy` on the same images.

    /usr/bin/python3 bench/coords/torch_check.py EMBER MODEL.safetensors IMAGES.npz

Prints the largest relative difference of the energies; exits 1 if it is above 1e-4.
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from ember_torch import safetensors  # noqa: E402
from ember_torch.nets import EnergyNet  # noqa: E402


def read_safetensors(path):
    arrays, meta = safetensors.read(path)
    return meta, {name: torch.from_numpy(np.array(a, dtype=np.float32)) for name, a in arrays.items()}


def encode(meta, tensors, img):
    """img: (n, H, W, C) uint8 -> features (n, F)"""
    layers = meta["encoder.conv"].split(",")
    head = meta["encoder.head"]
    h = torch.from_numpy(img).float().div(255.0).permute(0, 3, 1, 2)  # NCHW
    for i, spec in enumerate(layers):
        stride = int(spec.split(":")[2])
        h = F.conv2d(h, tensors[f"encoder.conv.{i}.weight"], tensors[f"encoder.conv.{i}.bias"], stride=stride)
        if i < len(layers) - 1 or head == "pool":
            h = torch.relu(h)
    n, c, oh, ow = h.shape
    if head == "pool":
        return h.mean(dim=(2, 3))
    p = torch.softmax(h.reshape(n, c, oh * ow), dim=-1).reshape(n, c, oh, ow)
    gu = torch.linspace(-1, 1, ow) if ow > 1 else torch.zeros(1)
    gv = torch.linspace(-1, 1, oh) if oh > 1 else torch.zeros(1)
    u = (p.sum(dim=2) * gu).sum(-1)
    v = (p.sum(dim=3) * gv).sum(-1)
    return torch.stack([u, v], dim=-1).reshape(n, 2 * c)  # u_0, v_0, u_1, ...


def main():
    ember, model, images = sys.argv[1:4]
    meta, tensors = read_safetensors(model)
    x_dim, y_dim = int(meta["x_dim"]), int(meta["y_dim"])
    net = EnergyNet(x_dim, y_dim, int(meta["width"]), int(meta["depth"]), meta["arch"])
    net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("encoder.")})
    out = subprocess.run([ember, "predict", "--model", model, "--input", images, "--energy"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[1:]
    rows = np.array([[float(v) for v in line.split(",")] for line in out], dtype=np.float32)
    y, e_ember = rows[:, :y_dim], rows[:, y_dim]
    ym, ys = (np.array(json.loads(meta[k]), dtype=np.float32) for k in ("y_mean", "y_std"))
    with torch.no_grad():
        x = encode(meta, tensors, np.load(images)["x"])
        e = net(x, torch.from_numpy((y - ym) / ys).unsqueeze(1)).squeeze(1).numpy()
    diff = np.max(np.abs(e - e_ember) / np.maximum(1.0, np.abs(e)))
    print(f"{len(e)} images: largest relative energy difference ember vs PyTorch {diff:.2e}")
    sys.exit(0 if diff < 1e-4 else 1)


if __name__ == "__main__":
    main()
