"""Counter-based pseudo-random numbers: value = hash(key, index).

The market model needs random *access* (the state at 11:02:17 without walking from 09:15),
the same numbers whether a second is computed alone, in a one-minute block or in a whole
day, and the same numbers on every machine. A stateful generator gives none of that cheaply;
hashing the index with SplitMix64's finaliser does. Only integer operations are used, so
results never depend on a platform's floating-point library.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB

U64Array = npt.NDArray[np.uint64]
I64Array = npt.NDArray[np.int64]


def mix64_int(x: int) -> int:
    """SplitMix64 finaliser on a Python int (scalar twin of :func:`mix64`)."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * _M1) & MASK64
    x = ((x ^ (x >> 27)) * _M2) & MASK64
    return x ^ (x >> 31)


def mix64(x: U64Array) -> U64Array:
    """SplitMix64 finaliser, element-wise; uint64 arithmetic wraps like the scalar version."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(_M1)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(_M2)
    return x ^ (x >> np.uint64(31))


def stream_key(*parts: int) -> int:
    """A 64-bit key for one random stream, e.g. (seed, token, day ordinal, stream id)."""
    key = 0x6A09E667F3BCC908
    for part in parts:
        key = mix64_int(key ^ (part & MASK64)) + _GOLDEN
    return key & MASK64


def bits(key: int, index: I64Array) -> U64Array:
    """64 random bits for each index of the stream ``key``."""
    counter = np.uint64(key) + index.astype(np.uint64) * np.uint64(_GOLDEN)
    return mix64(counter)


def bits_int(key: int, index: int) -> int:
    """64 random bits for one index (same value as :func:`bits`)."""
    return mix64_int(key + index * _GOLDEN)


def unit_int(key: int, index: int) -> float:
    """A uniform float in [0, 1) for one index (53 bits, exact)."""
    return (bits_int(key, index) >> 11) * (1.0 / (1 << 53))
