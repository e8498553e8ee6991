"""Fit the coefficients of the vectorized erf that generated modules carry
(``_erf`` in generator/compile/npcode.py), in 50-digit arithmetic (mpmath).

    python scripts/erf_fit.py        # prints the constants; compare with npcode.py

For |x| < SPLIT:   erf(x) = x + x·P(x²), P the degree-10 Chebyshev interpolant
                   of erf(x)/x − 1 on [0, SPLIT²] (the leading x is exact, so
                   P's rounding is damped by |P| ≤ 0.13).
For SPLIT ≤ |x| < 6: erf(x) = 1 − exp(−x²)·Q(v), v = (2/(2+|x|) − MID)/HALF ∈ [−1, 1],
                   Q the degree-12 fit of erfc(x)·exp(x²), least squares weighted
                   by exp(−x²), i.e. on the error it makes in erf.
For |x| ≥ 6:       erf(x) = ±1 (erfc(6) < 2.2·10⁻¹⁷, under half an ulp of 1).

Exact GELU in float32 (``_gelu``'s float32 path) takes the normal CDF from one rational function,
Φ(x) = ½ + c·N(c²)/D(c²), c = x clamped to ±4√2: erf(u)/u = n(u²)/d(u²) fitted for relative
error on [0, 4] (least squares, reweighted by the previous denominator until it settles), then
u = x/√2 folded into the coefficients.
"""

from __future__ import annotations

import mpmath as mp

mp.mp.dps = 50
SPLIT, SMALL_DEGREE, LARGE_DEGREE, SAMPLES = 0.85, 10, 12, 600


def small_coefficients() -> list:
    """Chebyshev interpolation of erf(√z)/√z − 1 on [0, SPLIT²], as monomials in z."""
    n, hi = SMALL_DEGREE, mp.mpf(SPLIT) ** 2
    f = lambda z: mp.erf(mp.sqrt(z)) / mp.sqrt(z) - 1 if z else 2 / mp.sqrt(mp.pi) - 1  # noqa: E731
    zs = [hi / 2 + hi / 2 * mp.cos(mp.pi * (k + mp.mpf(1) / 2) / (n + 1)) for k in range(n + 1)]
    a = mp.matrix([[z ** j for j in range(n + 1)] for z in zs])
    return list(mp.lu_solve(a, mp.matrix([f(z) for z in zs])))


def large_coefficients() -> tuple[list, mp.mpf, mp.mpf]:
    n = LARGE_DEGREE
    lo, hi = 2 / (2 + mp.mpf(6)), 2 / (2 + mp.mpf(SPLIT))
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    vs = [mp.cos(mp.pi * (k + mp.mpf(1) / 2) / SAMPLES) for k in range(SAMPLES)]
    a, y = mp.matrix(SAMPLES, n + 1), mp.matrix(SAMPLES, 1)
    for i, v in enumerate(vs):
        x = 2 / (mid + half * v) - 2
        w = mp.exp(-x * x)
        for j in range(n + 1):
            a[i, j] = w * v ** j
        y[i] = w * mp.erfc(x) * mp.exp(x * x)
    return list(mp.lu_solve(a.T * a, a.T * y)), mid, half


def phi32_coefficients(nd: int = 6, dd: int = 4, iters: int = 8) -> tuple[list, list]:
    import numpy as np
    clamp, m = 4.0, 3000
    k = np.arange(m)
    us = np.concatenate([clamp * (0.5 + 0.5 * np.cos(np.pi * (k + 0.5) / m)), np.linspace(0, clamp, 2000)])
    f = np.array([float(mp.erf(u) / u) if u else float(2 / mp.sqrt(mp.pi)) for u in us])
    t = (us / clamp) ** 2  # scaled to [0, 1] for the fit
    den = np.ones_like(t)
    for _ in range(iters):
        a = np.concatenate([np.stack([t ** j for j in range(nd + 1)], 1),
                            -f[:, None] * np.stack([t ** j for j in range(1, dd + 1)], 1)], 1)
        w = 1 / (f * den)
        c = np.linalg.lstsq(a * w[:, None], f * w, rcond=None)[0]
        n, d = c[: nd + 1], np.concatenate([[1.0], c[nd + 1:]])
        den = np.polyval(d[::-1], t)
    # back to u² (÷ clamp²ʲ), then u² = x²/2 (÷ 2ʲ) and ½·erf(x/√2) = x·(1/(2√2))·n/d
    big = [float(v) / (clamp ** 2 * 2) ** j / (2 * float(mp.sqrt(2))) for j, v in enumerate(n)]
    small = [float(v) / (clamp ** 2 * 2) ** j for j, v in enumerate(d)]
    return big, small


def main() -> None:
    large, mid, half = large_coefficients()
    print(f"_ERF_SPLIT = {SPLIT!r}")
    print("_ERF_SMALL = (" + ", ".join(repr(float(c)) for c in small_coefficients()) + ")")
    print("_ERF_LARGE = (" + ", ".join(repr(float(c)) for c in large) + ")")
    print(f"_ERF_MID, _ERF_HALF = {float(mid)!r}, {float(half)!r}")
    n32, d32 = phi32_coefficients()
    print("_PHI32_N = (" + ", ".join(repr(c) for c in n32) + ")")
    print("_PHI32_D = (" + ", ".join(repr(c) for c in d32) + ")")


if __name__ == "__main__":
    main()
