"""Cross-check an ember image model against PyTorch: load the checkpoint with python/ember_torch
(its Encoder: nn.Conv2d layers with the checkpoint's encoder.conv.L tensors, the soft-argmax or
pooling head; the energy network), then compare the energies of `ember predict --energy`'s
answers on the same images with PyTorch's at the same y.

    /usr/bin/python3 bench/coords/torch_check.py EMBER MODEL.safetensors IMAGES.npz

Prints the largest relative difference of the energies; exits 1 if it is above 1e-4.
(tests/integration/test_torch.py checks the same, and more, on small models in `make test`.)
"""
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import ember_torch as et  # noqa: E402


def main():
    ember, path, images = sys.argv[1:4]
    model = et.load_ember(path)
    if not model.has_images:
        sys.exit("%s is not an image model" % path)
    out = subprocess.run([ember, "predict", "--model", path, "--input", images, "--energy"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[1:]
    rows = np.array([[float(v) for v in line.split(",")] for line in out], dtype=np.float32)
    y, e_ember = rows[:, :model.y_dim], rows[:, model.y_dim]
    d = np.load(images)
    with torch.no_grad():
        x = model.raw_x(d["x"], d["x_extra"] if "x_extra" in d else None)
        e = model.energy_raw(x, torch.from_numpy(y).unsqueeze(1)).squeeze(1).numpy()
    diff = np.max(np.abs(e - e_ember) / np.maximum(1.0, np.abs(e)))
    print(f"{len(e)} images: largest relative energy difference ember vs PyTorch {diff:.2e}")
    sys.exit(0 if diff < 1e-4 else 1)


if __name__ == "__main__":
    main()
