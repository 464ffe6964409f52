"""Power-law (1/f^beta) texture: synthesis and measurement.

Mammographic parenchyma has an isotropic power spectrum that falls as a power
law, ``P(f) ~ f**-beta``, with ``beta`` between about 2.5 and 3 [1]_ [2]_. The synthetic
phantoms draw their fibroglandular tissue from such a field, and the same
measurement, :func:`fit_power_law_exponent`, is applied to phantoms and to
real mammograms so the two can be compared.

References
----------
.. [1] Burgess AE, Jacobson FL, Judy PF. Human observer detection experiments
       with mammograms and power-law noise. Med Phys 28(4):419-437, 2001.
.. [2] Li H, Giger ML, Olopade OI, Chinander MR. Power spectral analysis of
       mammographic parenchymal patterns for breast cancer risk assessment.
       J Digit Imaging 21(2):145-152, 2008 (mean beta 2.47 and 2.92 in two
       groups of women).
"""

import numpy as np
from scipy import fft, ndimage

__all__ = ["power_law_noise", "radial_power_spectrum", "fit_power_law_exponent"]

#: Frequency band of the fit, in cycles per pixel of the analysed region.
#: Below 0.02 the few annuli hold few samples and carry window leakage and
#: the large-scale thickness trend. Above 0.15 detector noise, the MTF and
#: processing flatten the spectrum of real images: on the GMIC sample exam
#: the local slope is 2.2-3.2 below 0.08 and 2.1-2.6 from 0.08 to 0.16, so
#: the fit averages over a mildly curved spectrum. Stopping at 0.15 rather
#: than 0.1 nearly halves the spread of the estimate on the ~250-pixel
#: regions of default-size phantoms (0.22 to 0.13). At the ~0.1 mm pixels of
#: a full-field detector the band is 0.2-1.5 cycles/mm.
FIT_BAND = (0.02, 0.15)


def power_law_noise(shape, beta, rng, f_min=None, aspect=1.0, angle=0.0):
    """Gaussian random field with power spectrum ``P(f) ~ f**-beta``.

    Parameters
    ----------
    shape : tuple of int
        Output shape (rows, cols).
    beta : float
        Spectral exponent; 2.5-3 mimics breast parenchyma.
    rng : numpy.random.Generator
        Source of randomness.
    f_min : float, optional
        Frequency (cycles/pixel) below which the spectrum is flat. Defaults to
        one cycle over the longer side, so the largest structures scale with
        the image and the texture looks the same at any size.
    aspect : float
        Elongation of the structures (1 is isotropic). Breast tissue is
        elongated towards the nipple; a radial average of the spectrum still
        falls as ``f**-beta``.
    angle : float
        Direction of elongation in radians: the unit step
        ``(drow, dcol) = (sin(angle), cos(angle))``.

    Returns
    -------
    field : ndarray of float32
        Zero mean, unit standard deviation.
    """
    if f_min is None:
        f_min = 1.0 / max(shape)
    # float32 halves the cost; the field needs no more precision.
    fy = fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    # Stretching space along a direction compresses frequencies along it.
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    f_along = fx * cos + fy * sin
    f_across = fy * cos - fx * sin
    f = np.maximum(np.hypot(f_along * aspect, f_across), np.float32(f_min))
    amplitude = f ** np.float32(-beta / 2.0)
    white = rng.standard_normal(shape, dtype=np.float32)
    field = fft.irfft2(fft.rfft2(white) * amplitude, s=shape)
    field -= field.mean()
    field /= field.std()
    return field


def radial_power_spectrum(patch):
    """Radially averaged power spectrum of a square patch, Hann-windowed.

    Parameters
    ----------
    patch : (N, N) array
        Image region; its mean is removed before windowing.

    Returns
    -------
    freqs : ndarray
        Annulus centres, ``k / N`` cycles/pixel for ``k = 1 .. N//2``.
    power : ndarray
        Mean periodogram value in each annulus.
    """
    n = patch.shape[0]
    window = np.outer(np.hanning(n), np.hanning(n))
    centred = (patch - patch.mean()) * window
    periodogram = np.abs(fft.rfft2(centred)) ** 2
    ky = np.abs(fft.fftfreq(n) * n)[:, None]
    kx = (fft.rfftfreq(n) * n)[None, :]
    annulus = np.rint(np.hypot(ky, kx)).astype(np.intp)
    n_bins = n // 2 + 1
    sums = np.bincount(annulus.ravel(), periodogram.ravel(), minlength=n_bins)
    counts = np.bincount(annulus.ravel(), minlength=n_bins)
    k = np.arange(1, n_bins)
    return k / n, sums[1:n_bins] / counts[1:n_bins]


def _inscribed_square(mask, skin_margin):
    """Slices of the largest square inside ``mask`` that keeps away from its edge.

    Pixels closer to the mask boundary than ``skin_margin`` times the largest
    inscribed radius are excluded first, which keeps the region clear of the
    skin line and of the thickness fall-off at the breast edge.
    """
    distance = ndimage.distance_transform_edt(mask)
    interior = distance >= skin_margin * distance.max()
    # The padding stops the square at the image border, which the Euclidean
    # distance above rightly ignores (the chest wall is not skin).
    half = ndimage.distance_transform_cdt(
        np.pad(interior, 1), metric="chessboard"
    )[1:-1, 1:-1]
    row, col = np.unravel_index(np.argmax(half), half.shape)
    r = int(half[row, col]) - 1
    return slice(row - r, row + r + 1), slice(col - r, col + r + 1)


def fit_power_law_exponent(image, mask, band=FIT_BAND, skin_margin=0.25):
    """Fit ``beta`` in ``P(f) ~ f**-beta`` to the breast texture of an image.

    The largest square inside ``mask`` (kept away from the skin, see
    ``skin_margin``) is Hann-windowed, its radially averaged power spectrum
    computed, and a least-squares line fitted to ``log P`` against ``log f``
    over ``band``.

    Parameters
    ----------
    image : 2-D array
        Mammogram or phantom.
    mask : 2-D bool array
        Breast region (for real images ``image > 0`` is enough: the largest
        square lands in the breast, not on small labels).
    band : (float, float)
        Fitted frequencies in cycles/pixel, see :data:`FIT_BAND`.
    skin_margin : float
        Fraction of the largest inscribed radius kept clear of the mask edge.

    Returns
    -------
    beta : float
    """
    rows, cols = _inscribed_square(np.asarray(mask, bool), skin_margin)
    patch = np.asarray(image, np.float64)[rows, cols]
    freqs, power = radial_power_spectrum(patch)
    in_band = (freqs >= band[0]) & (freqs <= band[1]) & (power > 0)
    if in_band.sum() < 3:
        raise ValueError(
            f"square region of {patch.shape[0]} px too small for band {band}"
        )
    slope, _ = np.polyfit(np.log(freqs[in_band]), np.log(power[in_band]), 1)
    return float(-slope)
