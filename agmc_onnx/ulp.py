"""Moving every element of a float array by one unit in the last place, up or down at random.

The oracle's tolerance is the change such moves of every arithmetic constant cause in the outputs
(``agmc_onnx.validate.rounding_noise``): that is float32 rounding noise propagated through the network.
"""

from __future__ import annotations

import numpy as np

__all__ = ["OneUlp"]

_SAME_WIDTH_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}
_CHUNK = 1 << 16  # elements perturbed per step, in buffers allocated once; rounded to whole coin words
_WORD = 32  # coins per random word


def _coins(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` fair coins (True: towards -inf), bit i of a stream of random 32-bit words: a stream cut into
    pieces of whole words is the stream drawn at once."""
    words = rng.integers(0, 1 << 32, size=-(-n // _WORD), dtype=np.uint32)
    return np.unpackbits(words.view(np.uint8), count=n, bitorder="little").view(bool)


class OneUlp:
    """``np.nextafter`` of every element towards +inf or -inf at random (one fair coin per element), the
    coins of every call drawn from one stream.

    Computed on the unsigned integer view: one ulp away from zero is +1 on the bits, towards zero -1 (the
    step is ``1 - 2 * (sign bit XOR down)``); a zero becomes the smallest subnormal of the chosen sign
    (what ``nextafter`` gives), and a chunk holding a NaN or an infinity goes through ``nextafter`` itself.
    The work runs a chunk at a time in cache-sized buffers allocated once for every call: a few passes
    over each block and no page faults beyond the result's.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.step = max(_WORD, _CHUNK - _CHUNK % _WORD)
        self._buffers: dict[type, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, values: np.ndarray, in_place: bool = False) -> np.ndarray:
        """The perturbed ``values``; ``in_place`` overwrites them (writable, C-contiguous) instead of
        allocating the result."""
        values = values if values.flags.c_contiguous else values.copy(order="C")
        moved = values if in_place else np.empty_like(values)
        unsigned = _SAME_WIDTH_UINT[values.dtype.itemsize]
        source, target = values.reshape(-1).view(unsigned), moved.reshape(-1).view(unsigned)
        if unsigned not in self._buffers:
            self._buffers[unsigned] = (np.empty(self.step, unsigned), np.empty(self.step, unsigned))
        for start in range(0, source.size, self.step):
            bits, out = source[start : start + self.step], target[start : start + self.step]
            scratch = tuple(buffer[: bits.size] for buffer in self._buffers[unsigned])
            self._chunk(bits, out, _coins(self.rng, bits.size), *scratch, values.dtype)
        return moved

    @staticmethod
    def _chunk(bits, out, down, magnitude, toward_zero, dtype) -> None:
        unsigned = bits.dtype.type
        sign_shift = unsigned(8 * bits.itemsize - 1)
        np.bitwise_and(bits, np.iinfo(unsigned).max >> 1, out=magnitude)
        if magnitude.max() >= np.array(np.inf, dtype).view(unsigned):
            with np.errstate(over="ignore"):
                towards = np.where(down, -np.inf, np.inf).astype(dtype)
                out.view(dtype)[:] = np.nextafter(bits.view(dtype), towards)
            return
        zero = magnitude == 0  # before ``out`` (possibly ``bits`` itself) is written
        np.right_shift(bits, sign_shift, out=toward_zero)
        np.bitwise_xor(toward_zero, down, out=toward_zero)
        base = bits
        if zero.any():  # a zero whose sign is not the coin's takes the coin's sign and moves away from zero
            flip = np.bitwise_and(toward_zero, zero, out=magnitude)
            np.subtract(toward_zero, flip, out=toward_zero)
            base = np.bitwise_xor(bits, np.left_shift(flip, sign_shift, out=flip), out=out)
        np.left_shift(toward_zero, unsigned(1), out=toward_zero)
        np.subtract(base, toward_zero, out=out)
        np.add(out, unsigned(1), out=out)
