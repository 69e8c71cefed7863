"""ember's random streams in NumPy: the same numbers lib/src/base.c draws.

ember seeds xoshiro256** from a (seed, stream) pair through splitmix64 (ember_rng_seed), and
draws uniforms as the top 24 bits times 2^-24 (ember_rng_uniform) and normals by Box-Muller in
double, two per pair of draws (ember_rng_normal_fill). Predict's row i uses stream
(seed, row_offset + i), so a PyTorch DFO that draws from these streams starts from, and adds
noise to, exactly the candidates emberd does (ember_torch.infer). Vectorised over streams: one
Streams object holds one generator per row and every call advances all of them in lock step.
"""
import numpy as np

_M64 = (1 << 64) - 1


def _splitmix64(x):
    """(new state, output) of splitmix64, on Python ints."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return x, z ^ (z >> 31)


def _seed_state(seed, stream):
    _, mixed = _splitmix64(seed & _M64)
    mixed ^= ((stream * 0xD1B54A32D192ED03) + 0x8CB92BA72F3D8DD7) & _M64
    s = []
    for _ in range(4):
        mixed, out = _splitmix64(mixed)
        s.append(out)
    return s


def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


class Streams:
    """One ember_rng per row: Streams(seed, [stream0, stream1, ...])."""

    def __init__(self, seed, streams):
        st = np.array([_seed_state(int(seed), int(s)) for s in streams], dtype=np.uint64)
        self.s = [st[:, i].copy() for i in range(4)]

    def __len__(self):
        return len(self.s[0])

    def u64(self):
        """ember_rng_u64 for every stream: (rows,) uint64."""
        s0, s1, s2, s3 = self.s
        with np.errstate(over="ignore"):
            result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
        t = s1 << np.uint64(17)
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        self.s[3] = _rotl(s3, 45)
        return result

    def uniform(self, n):
        """n ember_rng_uniform draws per stream: (rows, n) float32 in [0, 1)."""
        out = np.empty((len(self), n), dtype=np.float32)
        for i in range(n):
            out[:, i] = (self.u64() >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
        return out

    def _pair(self):
        u1 = ((self.u64() >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53
        u2 = (self.u64() >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        return np.sqrt(-2.0 * np.log(u1)), 2.0 * np.pi * u2

    def normal(self, n):
        """ember_rng_normal_fill of n values per stream: (rows, n) float32."""
        out = np.empty((len(self), n), dtype=np.float32)
        i = 0
        while i + 1 < n:
            r, a = self._pair()
            out[:, i] = (r * np.cos(a)).astype(np.float32)
            out[:, i + 1] = (r * np.sin(a)).astype(np.float32)
            i += 2
        if i < n:
            r, a = self._pair()
            out[:, i] = (r * np.cos(a)).astype(np.float32)
        return out
