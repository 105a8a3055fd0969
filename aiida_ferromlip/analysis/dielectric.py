"""Dielectric response from the total-dipole fluctuations of MD (BaTiO3-GAP paper, Sec. 2.5, eqs. 4-6). No AiiDA.

* static tensor: eps_ab = eps_inf delta_ab + (<M_a M_b> - <M_a><M_b>) / (eps0 V kB T), SI units; the BaTiO3-GAP paper's eq. 4
  is its isotropic part (trace / 3) with <M> = 0 in the cubic phase; the mean is subtracted here so the polar
  phases give their (anisotropic) tensor too;
* Curie-Weiss: eps(T) = C / (T - Tc) + eps_T->inf, fitted above the transition (eq. 5), with standard errors;
* frequency dependence: chi(w) = (eps_r - 1) (1 - i w int_0^inf C(t) e^{-i w t} dt), C the normalised
  autocorrelation of the dipole fluctuations (eq. 6), the integral cut at ``max_lag`` with a Hann taper so the
  noisy tail of a finite run does not ring, evaluated exactly for C piecewise linear between frames.

Hand-written because these are a few lines of linear response on arrays; scipy does the fit.
"""

from __future__ import annotations

import numpy as np
from scipy import constants

#: e·Å -> C·m
E_ANGSTROM = constants.e * 1e-10


def static_dielectric_tensor(dipoles, volume_a3: float, temperature_k: float, eps_inf: float = 1.0) -> np.ndarray:
    """The 3x3 static dielectric tensor from total dipoles (n frames x 3, e·Å) of an MD at one temperature."""
    dipoles = np.asarray(dipoles, dtype=float)
    if dipoles.ndim != 2 or dipoles.shape[1] != 3 or len(dipoles) < 2:
        raise ValueError(f'need at least two frames of 3-vector dipoles, got shape {dipoles.shape}')
    if volume_a3 <= 0 or temperature_k <= 0:
        raise ValueError('the volume and the temperature must be positive')
    fluctuation = np.cov(dipoles.T * E_ANGSTROM, bias=True)
    return eps_inf * np.eye(3) + fluctuation / (constants.epsilon_0 * volume_a3 * 1e-30 * constants.k * temperature_k)


def curie_weiss_fit(temperatures, eps) -> dict:
    """Fit eps = C / (T - Tc) + eps_inf to points above the transition: C (K), Tc (K), eps_inf, their standard
    errors. The start comes from the straight line of 1/eps against T (Curie's law without the offset)."""
    from scipy.optimize import curve_fit

    temperatures, eps = np.asarray(temperatures, dtype=float), np.asarray(eps, dtype=float)
    if len(temperatures) < 4:
        raise ValueError(f'a Curie-Weiss fit has 3 parameters: give at least 4 temperatures, got {len(temperatures)}')
    slope, intercept = np.polyfit(temperatures, 1 / eps, 1)
    if slope <= 0:
        raise ValueError('1/eps does not grow with temperature: these points are not on a Curie-Weiss branch')
    start = (1 / slope, -intercept / slope, 0.0)

    def law(t, c, tc, offset):
        return c / (t - tc) + offset

    bounds = ([0, -np.inf, -np.inf], [np.inf, temperatures.min() - 1e-6, np.inf])
    start = (start[0], min(start[1], temperatures.min() - 1.0), start[2])
    values, covariance = curve_fit(law, temperatures, eps, p0=start, bounds=bounds, maxfev=20000)
    errors = np.sqrt(np.diag(covariance))
    return {'C_K': float(values[0]), 'Tc_K': float(values[1]), 'eps_T_inf': float(values[2]),
            'C_K_error': float(errors[0]), 'Tc_K_error': float(errors[1]), 'eps_T_inf_error': float(errors[2])}


def dipole_autocorrelation(dipoles, max_lag: int) -> np.ndarray:
    """Normalised autocorrelation <dM(0)·dM(t)> / <dM²> of the dipole fluctuations, lags 0..max_lag (frames)."""
    dipoles = np.asarray(dipoles, dtype=float)
    fluctuation = dipoles - dipoles.mean(axis=0)
    n = len(fluctuation)
    if not 0 < max_lag < n:
        raise ValueError(f'max_lag must be between 1 and the number of frames - 1 ({n - 1}), got {max_lag}')
    padded = np.zeros((2 * n, 3))
    padded[:n] = fluctuation
    spectrum = np.fft.rfft(padded, axis=0)
    correlation = np.fft.irfft(spectrum * spectrum.conj(), axis=0)[:max_lag + 1].sum(axis=1)
    correlation /= n - np.arange(max_lag + 1)  # unbiased: each lag averaged over the pairs it has
    return correlation / correlation[0]


def susceptibility_spectrum(dipoles, timestep_fs: float, eps_static: float, max_lag: int,
                            frequencies_thz=None) -> tuple[np.ndarray, np.ndarray]:
    """chi(f) = (eps_r - 1)(1 - i w int_0^T C(t) e^{-iwt} dt), w = 2 pi f, for frequencies in THz (default: up to
    a quarter of the Nyquist frequency of the frame spacing ``timestep_fs``, where frames resolve the oscillation).

    Integrated by parts, 1 - i w int C e^{-iwt} = -int C'(t) e^{-iwt} dt (C(0) = 1, the tapered C(T) = 0), with C
    piecewise linear between frames so each interval's integral is exact: no factor w multiplies a quadrature
    error, which otherwise sends chi back to eps - 1 towards the Nyquist frequency. Returns (frequencies, chi)."""
    correlation = dipole_autocorrelation(dipoles, max_lag) * np.hanning(2 * max_lag + 1)[max_lag:]
    step_ps = timestep_fs * 1e-3
    if frequencies_thz is None:
        frequencies_thz = np.linspace(0, 0.125 / step_ps, 300)
    frequencies_thz = np.asarray(frequencies_thz, dtype=float)
    omega = 2 * np.pi * frequencies_thz[:, None]  # rad/ps
    starts = np.arange(max_lag)[None, :] * step_ps
    slopes = np.diff(correlation)[None, :] / step_ps
    with np.errstate(invalid='ignore', divide='ignore'):
        interval = np.where(omega == 0, step_ps, np.exp(-1j * omega * starts) * (1 - np.exp(-1j * omega * step_ps))
                            / (1j * np.where(omega == 0, 1.0, omega)))
    return frequencies_thz, (eps_static - 1) * -(slopes * interval).sum(axis=1)
