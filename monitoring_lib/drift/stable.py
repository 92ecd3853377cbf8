"""Mean and standard deviation that stay finite for values near float max (sentinels such as 1e300).

NumPy squares the deviations, which overflows from about 1e154; scaling by a power of two first is
exact, so ordinary values get bit-for-bit NumPy's results and only huge ones are scaled.
"""

from __future__ import annotations

import math

import numpy as np

# below this magnitude neither the sum of n values nor the squared deviations can overflow
_SAFE = 2.0**500


def mean_std(x: np.ndarray, ddof: int = 1) -> tuple[float, float]:
    """(mean, std) of finite values; std is 0.0 when there are not more than `ddof` of them."""
    if x.size == 0:
        return math.nan, math.nan
    peak = float(np.max(np.abs(x)))
    if peak < _SAFE:
        return float(x.mean()), float(x.std(ddof=ddof)) if x.size > ddof else 0.0
    exponent = math.frexp(peak)[1]
    y = np.ldexp(x, -exponent)
    std = math.ldexp(float(y.std(ddof=ddof)), exponent) if x.size > ddof else 0.0
    return math.ldexp(float(y.mean()), exponent), std
