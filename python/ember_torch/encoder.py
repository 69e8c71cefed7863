"""ember's image encoder as a torch.nn.Module (lib/include/ember/encoder.h, docs/images.md).

An image is H x W x C uint8 (NHWC, as numpy holds camera frames), scaled to [0, 1]. Layer l is
Conv2d(in, channels, kernel, stride, padding=pad) (zero padding, 0 unless the spec's layer has a
fourth field), ReLU after every layer except, with the
soft-argmax head, the last, whose maps are the softmax's logits. The head:
  softargmax  per map, softmax over its positions, then the expected coordinates (u, v) in
              [-1, 1] (u across: -1 the first column's centre, +1 the last's; v down): 2C
              features, u_0, v_0, u_1, ...
  pool        the mean of each map: C features.
The features, then any extra observations, are the energy network's x. State_dict names are
ember's checkpoint names below the model's `encoder.`: conv.L.weight (OIHW) and conv.L.bias.
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

HEADS = ("softargmax", "pool")
DEFAULT_CONV = "8:5:2:2,16:3:1:1"  # EMBER_ENCODER_DEFAULT_CONV (lib/include/ember/encoder.h)

# ember's bounds (ember_encoder_shape_check)
MAX_CONV, MAX_IMAGE_SIDE, MAX_IMAGE_CHANNELS = 8, 1024, 16
MAX_CONV_CHANNELS, MAX_KERNEL, MAX_EXTRA = 1024, 15, 4096


def parse_conv(spec):
    """"16:5:2:2,32:3:1:1" -> [(channels, kernel, stride, pad), ...] (ember_conv_spec_parse's
    syntax: channels:kernel:stride[:pad], pad 0 when left out)."""
    layer = r"\d{1,5}:\d{1,5}:\d{1,5}(:\d{1,5})?"
    if not isinstance(spec, str) or not re.fullmatch(layer + "(," + layer + ")*", spec):
        raise ValueError("%r: each convolution layer is channels:kernel:stride, three positive "
                         "integers, or channels:kernel:stride:pad with zero padding pad >= 0, layers "
                         "separated by commas (e.g. %s)" % (spec, DEFAULT_CONV))
    layers = [tuple(int(v) for v in part.split(":")) for part in spec.split(",")]
    layers = [l if len(l) == 4 else l + (0,) for l in layers]
    if len(layers) > MAX_CONV:
        raise ValueError("%r: at most %d convolution layers" % (spec, MAX_CONV))
    if any(v < 1 for layer in layers for v in layer[:3]):
        raise ValueError("%r: channels, kernel and stride must be positive" % (spec,))
    return layers


def conv_text(layers):
    return ",".join(":".join(str(v) for v in (l if l[3] else l[:3])) for l in layers)


def geometry(image, layers):
    """ember's geometry checks: [(in_c, out_c, k, s, pad, out_h, out_w)] per layer, or ValueError."""
    h, w, c = image
    if not (1 <= h <= MAX_IMAGE_SIDE and 1 <= w <= MAX_IMAGE_SIDE):
        raise ValueError("image height and width must be 1..%d, got %dx%d" % (MAX_IMAGE_SIDE, h, w))
    if not 1 <= c <= MAX_IMAGE_CHANNELS:
        raise ValueError("image channels must be 1..%d, got %d" % (MAX_IMAGE_CHANNELS, c))
    if not 1 <= len(layers) <= MAX_CONV:
        raise ValueError("an encoder has 1..%d convolution layers, got %d" % (MAX_CONV, len(layers)))
    out, ih, iw = [], h, w
    for i, (ch, k, s, pad) in enumerate(layers):
        if not 1 <= ch <= MAX_CONV_CHANNELS:
            raise ValueError("convolution %d: channels must be 1..%d, got %d" % (i, MAX_CONV_CHANNELS, ch))
        if not 1 <= k <= MAX_KERNEL:
            raise ValueError("convolution %d: kernel must be 1..%d, got %d" % (i, MAX_KERNEL, k))
        if not 1 <= s <= k:
            raise ValueError("convolution %d: stride must be 1..kernel (%d), got %d" % (i, k, s))
        if not 0 <= pad < k:
            raise ValueError("convolution %d: padding must be 0..kernel - 1 (%d), got %d" % (i, k - 1, pad))
        if k > ih + 2 * pad or k > iw + 2 * pad:
            raise ValueError("convolution %d: a %dx%d kernel does not fit its %dx%d input padded by %d "
                             "(the image is %dx%d)" % (i, k, k, ih, iw, pad, h, w))
        oh, ow = (ih + 2 * pad - k) // s + 1, (iw + 2 * pad - k) // s + 1
        out.append((c, ch, k, s, pad, oh, ow))
        ih, iw, c = oh, ow, ch
    return out


class Encoder(nn.Module):
    """Encoder(image=(H, W, C), conv=DEFAULT_CONV, head="softargmax", extra=0).
    forward(images (n, H, W, C) or (n, H, W) uint8, or floats already in [0, 1]) -> (n, features)."""

    def __init__(self, image, conv=DEFAULT_CONV, head="softargmax", extra=0):
        super().__init__()
        if head not in HEADS:
            raise ValueError("encoder head must be softargmax or pool, got %r" % (head,))
        if not 0 <= int(extra) <= MAX_EXTRA:
            raise ValueError("extra observations must be 0..%d, got %d" % (MAX_EXTRA, extra))
        self.image = tuple(int(v) for v in image)
        if len(self.image) != 3:
            raise ValueError("image must be (height, width, channels), got %r" % (image,))
        self.layers_spec = parse_conv(conv) if isinstance(conv, str) else [tuple(map(int, c)) + (0,) * (4 - len(c)) for c in conv]
        self.geom = geometry(self.image, self.layers_spec)
        self.head, self.extra = head, int(extra)
        # nn.Conv2d's default init is ember_encoder_init_params' distribution, U(+-1/sqrt(fan_in))
        self.conv = nn.ModuleList(nn.Conv2d(ic, oc, k, s, p) for ic, oc, k, s, p, _, _ in self.geom)
        last = self.geom[-1][1]
        self.features = 2 * last if head == "softargmax" else last
        oh, ow = self.geom[-1][5], self.geom[-1][6]
        self.register_buffer("grid_u", torch.linspace(-1, 1, ow) if ow > 1 else torch.zeros(1), persistent=False)
        self.register_buffer("grid_v", torch.linspace(-1, 1, oh) if oh > 1 else torch.zeros(1), persistent=False)

    def spec(self):
        """The checkpoint's encoder.* metadata."""
        h, w, c = self.image
        return {"encoder.image": "%dx%dx%d" % (h, w, c), "encoder.conv": conv_text(self.layers_spec),
                "encoder.head": self.head, "encoder.extra": str(self.extra)}

    def pixels(self, img):
        """Images as NCHW float32 in [0, 1] on the encoder's device."""
        img = torch.as_tensor(img)
        if img.ndim == 3 and self.image[2] == 1:
            img = img.unsqueeze(-1)
        if img.ndim != 4 or tuple(img.shape[1:]) != self.image:
            raise ValueError("the encoder takes images of shape (n, %d, %d, %d), got %s"
                             % (self.image + (tuple(img.shape),)))
        w = self.conv[0].weight
        if img.dtype == torch.uint8:
            img = img.to(w.device).to(w.dtype).div_(255.0)
        else:
            img = img.to(w.device, w.dtype)
        return img.permute(0, 3, 1, 2)

    def forward(self, img):
        h = self.pixels(img)
        last = len(self.conv) - 1
        for i, conv in enumerate(self.conv):
            h = conv(h)
            if i < last or self.head == "pool":
                h = torch.relu(h)
        if self.head == "pool":
            return h.mean(dim=(2, 3))
        n, c, oh, ow = h.shape
        p = torch.softmax(h.reshape(n, c, oh * ow), dim=-1).reshape(n, c, oh, ow)
        u = (p.sum(dim=2) * self.grid_u).sum(-1)
        v = (p.sum(dim=3) * self.grid_v).sum(-1)
        return torch.stack([u, v], dim=-1).reshape(n, 2 * c)  # u_0, v_0, u_1, ...

    def macs(self):
        """Multiply-adds of one image's forward pass (ember_encoder_macs)."""
        return sum(oh * ow * oc * ic * k * k for ic, oc, k, s, _, oh, ow in self.geom)
