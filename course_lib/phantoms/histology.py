"""Synthetic H&E breast histology in the style of BreakHis (synthetic data).

:func:`make_histology` draws a 700 x 460 RGB image that looks like a BreakHis
field of view [1]_: pink eosin-stained stroma with collagen fibres, purple
haematoxylin-stained nuclei, white lumina, fat and slide gaps. Benign fields
show organised glands lined by a bilayer of small regular nuclei (luminal cells
inside, flat myoepithelial cells outside); malignant fields contain a tumour
region (returned as ``tumour_mask``) of crowded, enlarged, pleomorphic,
hyperchromatic nuclei arranged as the subtype dictates: solid nests (DC),
single-file cords (LC), clusters floating in mucin (MC) or fronds around
fibrovascular cores (PC). Everything here is synthetic; nothing is derived
from patient images.

Scale
-----
All structures are specified in micrometres and converted with a pixel size of
``100 / magnification`` micrometres (2.5 um at 40X ... 0.25 um at 400X). This is
an assumption of the kit, not a calibration of the BreakHis microscope: it is
chosen so that a 7 um epithelial nucleus measures about 2.8, 7, 14 and 28 px at
40X, 100X, 200X and 400X, which is what one sees in the real images. The whole
scene therefore zooms with the magnification: at 40X a field holds whole
lobules, at 400X a few cells.

Colour
------
Stain densities are mixed with the Beer-Lambert law, ``I = 255 exp(-OD)``, using
optical-density vectors tuned by eye on BreakHis images (haematoxylin
absorbs most in green and red, eosin in green). Stain strength and a grey
(desaturating) component vary per image, as the staining does across BreakHis
slides.

References
----------
.. [1] Spanhol FA, Oliveira LS, Petitjean C, Heutte L. A dataset for breast
       cancer histopathological image classification. IEEE Trans Biomed Eng
       63(7):1455-1462, 2016.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse

from course_lib.datasets.breakhis import MAGNIFICATIONS, SUBTYPES_OF, breakhis_filename

__all__ = [
    "NUCLEUS_DIAMETER_UM",
    "HistologyPhantom",
    "make_histology",
    "microns_per_pixel",
]

#: Diameter of a normal epithelial nucleus.
NUCLEUS_DIAMETER_UM = 7.0

# Optical density per unit stain (R, G, B), tuned on BreakHis colours: a unit of
# eosin gives the magenta-pink of collagen, ~1.2 units of haematoxylin the dark
# blue-purple of a nucleus.
_OD_HAEMATOXYLIN = np.array([0.95, 1.40, 0.50], np.float32)
_OD_EOSIN = np.array([0.08, 0.95, 0.25], np.float32)
_OD_GREY = np.array([0.30, 0.26, 0.20], np.float32)
_OD_GLASS = np.array([0.02, 0.05, 0.02], np.float32)

# Benign architecture, micrometres. Lobules are clusters of acini/ducts;
# `minor` is the short semi-axis of a gland, `aspect` its elongation.
_BENIGN_ARCHITECTURE = {
    # many small, crowded, often compressed acini
    "A": dict(lobules_per_mm2=1.5, lobule_radius=250, glands=(25, 45),
              minor=(18, 32), aspect=(1.0, 2.2), stroma_cells=1.2),
    # abundant stroma around compressed, slit-like ducts
    "F": dict(lobules_per_mm2=1.0, lobule_radius=450, glands=(5, 12),
              minor=(20, 35), aspect=(2.5, 6.0), stroma_cells=2.2),
    # leaf-like clefts in a markedly cellular stroma
    "PT": dict(lobules_per_mm2=0.7, lobule_radius=500, glands=(3, 8),
               minor=(25, 45), aspect=(4.0, 9.0), stroma_cells=3.5),
    # tightly packed small round tubules, little stroma
    "TA": dict(lobules_per_mm2=1.5, lobule_radius=300, glands=(60, 110),
               minor=(15, 24), aspect=(1.0, 1.4), stroma_cells=0.8),
}
# Normal tissue beside a carcinoma: sparse terminal duct lobular units.
_NORMAL_ARCHITECTURE = dict(lobules_per_mm2=0.4, lobule_radius=250, glands=(6, 15),
                            minor=(18, 30), aspect=(1.0, 1.8), stroma_cells=1.5)

# Tumour nuclei relative to a normal nucleus: mean enlargement, log-normal
# size spread (pleomorphism), largest aspect ratio, centre spacing in diameters.
_TUMOUR_CELLS = {
    "DC": dict(enlarge=1.8, spread=0.25, aspect=1.7, spacing=1.3),
    "LC": dict(enlarge=1.25, spread=0.10, aspect=1.3, spacing=1.3),
    "MC": dict(enlarge=1.5, spread=0.18, aspect=1.5, spacing=1.05),
    "PC": dict(enlarge=1.6, spread=0.18, aspect=2.0, spacing=1.0),
}

_EPITHELIUM_RIM_UM = 14.0  # luminal cell (~10 um) + myoepithelial cell (~4 um)


@dataclass(frozen=True, eq=False)
class HistologyPhantom:
    """A synthetic BreakHis-style H&E image and its ground truth.

    Attributes
    ----------
    image : (rows, cols, 3) uint8
        RGB image.
    tumour_mask : (rows, cols) bool
        Malignant tissue region; all False for benign images.
    label : {"benign", "malignant"}
    subtype : str
        BreakHis subtype code (A, F, PT, TA, DC, LC, MC, PC).
    magnification : int
        40, 100, 200 or 400.
    patient_id : str
    filename : str
        BreakHis-style file name, see :func:`course_lib.datasets.breakhis.breakhis_filename`.
    synthetic : bool
        Always True.
    """

    image: np.ndarray
    tumour_mask: np.ndarray
    label: str
    subtype: str
    magnification: int
    patient_id: str
    filename: str
    synthetic: bool = True


def microns_per_pixel(magnification):
    """Pixel size assumed for a BreakHis magnification: ``100 / magnification`` um."""
    if magnification not in MAGNIFICATIONS:
        raise ValueError(f"magnification must be one of {MAGNIFICATIONS}, got {magnification!r}")
    return 100.0 / magnification


# --------------------------------------------------------------------------- phantom

def make_histology(seed, label="malignant", subtype=None, magnification=40, shape=(460, 700),
                   *, patient_id=None, seq=1):
    """Synthetic BreakHis-style H&E field of view.

    Parameters
    ----------
    seed : int
        Seed of the random generator; the same arguments give the same image.
    label : {"malignant", "benign"}
    subtype : str, optional
        BreakHis subtype code of ``label``; drawn at random when None.
    magnification : {40, 100, 200, 400}
        Sets the pixel size (see the module docstring).
    shape : (int, int)
        Image rows and columns; BreakHis images are 460 x 700.
    patient_id : str, optional
        Used in the file name; defaults to ``"SYN"`` + the seed, which marks
        the file as synthetic.
    seq : int
        Sequence number in the file name.

    Returns
    -------
    HistologyPhantom
    """
    if label not in SUBTYPES_OF:
        raise ValueError(f"label must be 'benign' or 'malignant', got {label!r}")
    ppu = 1.0 / microns_per_pixel(magnification)  # pixels per micrometre
    shape = tuple(int(n) for n in shape)
    rng = np.random.default_rng(seed)
    if subtype is None:
        subtype = str(rng.choice(sorted(SUBTYPES_OF[label])))
    if patient_id is None:
        patient_id = f"SYN{int(seed):05d}"
    filename = breakhis_filename(label, subtype, patient_id, magnification, seq)

    tissue = _tissue_layout(rng, shape, ppu, label, subtype, magnification)
    haematoxylin, eosin, white = _stain_densities(rng, shape, ppu, tissue)
    image = _render(rng, haematoxylin, eosin, 1.0 - white, magnification)
    return HistologyPhantom(image=image, tumour_mask=tissue.tumour, label=label, subtype=subtype,
                            magnification=int(magnification), patient_id=str(patient_id),
                            filename=filename)


@dataclass
class _TissueLayout:
    """Where each tissue component lies; coverages are 0-1 float maps."""

    fibre_angle: float
    tumour: np.ndarray  # bool, malignant region
    white: np.ndarray  # bool, fat, gaps, clefts
    lumen: np.ndarray  # gland lumina coverage
    cytoplasm: np.ndarray  # epithelial / tumour cell coverage
    mucin: np.ndarray  # bool, extracellular mucin
    nuclei: list  # epithelial and tumour nucleus populations
    stroma_cells: float  # relative density of fibroblasts and lymphocytes


def _tissue_layout(rng, shape, ppu, label, subtype, magnification):
    """Lay out stroma, fat, glands and (for malignant fields) the carcinoma."""
    fibre_angle = rng.uniform(0.0, np.pi)
    white = _fat(rng, shape, ppu) | _slide_gaps(rng, shape, ppu)
    if label == "malignant":
        tumour = _tumour_region(rng, shape)
        tumour_white, cytoplasm, mucin, nuclei = _carcinoma(
            rng, shape, ppu, subtype, tumour, fibre_angle, magnification)
        white = (white & ~tumour) | tumour_white
        architecture = _NORMAL_ARCHITECTURE
        # normal lobules only away from the carcinoma
        forbidden = ndimage.binary_dilation(tumour, iterations=3)
        stroma_cells = 1.5 * architecture["stroma_cells"]  # reactive, inflamed stroma
    else:
        tumour = np.zeros(shape, bool)
        mucin = np.zeros(shape, bool)
        cytoplasm = np.zeros(shape, np.float32)
        nuclei = []
        architecture = _BENIGN_ARCHITECTURE[subtype]
        forbidden = np.zeros(shape, bool)
        stroma_cells = architecture["stroma_cells"]
    epithelium, lumen, gland_nuclei = _glands(rng, shape, ppu, architecture, fibre_angle,
                                              forbidden, required=label == "benign")
    # glands sit in a sleeve of stroma, never directly in fat or in a gap
    white &= ndimage.distance_transform_edt(epithelium < 0.5) > 15 * ppu
    return _TissueLayout(fibre_angle=fibre_angle, tumour=tumour, white=white, lumen=lumen,
                         cytoplasm=np.maximum(cytoplasm, epithelium), mucin=mucin,
                         nuclei=nuclei + gland_nuclei, stroma_cells=stroma_cells)


def _stain_densities(rng, shape, ppu, tissue):
    """Haematoxylin and eosin density maps, and the coverage of unstained (white) areas."""
    eosin = _stroma_eosin(rng, shape, ppu, tissue.fibre_angle)
    haematoxylin = np.full(shape, 0.05, np.float32)
    _paint_mucin(rng, haematoxylin, eosin, tissue.mucin, ppu)
    white = np.maximum(tissue.white * (1.0 - tissue.cytoplasm), tissue.lumen)
    grain = 1.0 + 0.2 * _smooth_noise(rng, shape, max(2 * ppu, 1.0))
    _paint_cover(haematoxylin, eosin, tissue.cytoplasm, 0.14 * grain, 0.32 * grain)
    _paint_lumina(rng, haematoxylin, eosin, white)
    stroma = (white < 0.5) & (tissue.cytoplasm < 0.2) & ~tissue.mucin
    nuclei = tissue.nuclei + _stromal_nuclei(rng, shape, ppu, stroma, tissue.fibre_angle,
                                             tissue.stroma_cells)
    chromatin = _chromatin(rng, shape, ppu)
    for population in nuclei:
        _paint_nuclei(haematoxylin, eosin, population, chromatin)
    return haematoxylin, eosin, white


# --------------------------------------------------------------------------- fields

def _smooth_noise(rng, shape, scale):
    """Zero-mean, unit-variance random field with features about ``scale`` px wide.

    ``scale`` may be a (rows, cols) pair for an anisotropic field.
    """
    scales = np.broadcast_to(np.asarray(scale, float), (2,))
    # Along an axis with wide features, interpolate a coarse lattice of white
    # noise with Gaussian kernels (a sparse matrix product, which unlike a dense
    # one never starts BLAS threads that stall on a busy machine); along an axis
    # with fine features, filter full-resolution noise. Both give
    # Gaussian-filtered white noise, the first at a fraction of the cost.
    kernels = [_gaussian_interpolator(n, s) if s >= 6 else None for n, s in zip(shape, scales)]
    lattice = [n if k is None else k.shape[1] for n, k in zip(shape, kernels)]
    field = rng.standard_normal(lattice)
    for axis, (kernel, s) in enumerate(zip(kernels, scales)):
        if kernel is None:
            field = ndimage.gaussian_filter1d(field, s / 2.0, axis=axis)
        elif axis == 0:
            field = kernel @ field
        else:
            field = (kernel @ field.T).T
    field = field - field.mean()
    return (field / (field.std() + 1e-12)).astype(np.float32)


def _gaussian_interpolator(n, scale):
    """Sparse (n, m) Gaussian weights from a lattice of step ``scale / 2`` to n pixels."""
    step = scale / 2.0
    centres = np.arange(-2.0 * step, n + 2.0 * step, step)
    weights = np.exp(-0.5 * ((np.arange(n)[:, None] - centres[None, :]) / step) ** 2)
    weights[weights < 1e-3] = 0.0  # beyond 3.7 lattice steps
    return sparse.csr_array(weights)


def _fibre_noise(rng, shape, across, along, angle, warp):
    """Anisotropic noise stretched along ``angle`` and bent by the ``warp`` field (px)."""
    side = int(np.ceil(np.hypot(*shape) + 2 * np.abs(warp).max())) + 4
    canvas = _smooth_noise(rng, (side, side), (across, along))
    rows, cols = _grid(shape)
    rows, cols = rows - shape[0] / 2, cols - shape[1] / 2
    u = cols * np.cos(angle) + rows * np.sin(angle) + side / 2
    v = -cols * np.sin(angle) + rows * np.cos(angle) + warp + side / 2
    return ndimage.map_coordinates(canvas, [v, u], order=1, mode="reflect")


def _grid(shape):
    """Row and column coordinate arrays."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return rows.astype(np.float32), cols.astype(np.float32)


def _stroma_eosin(rng, shape, ppu, fibre_angle):
    """Eosin density of collagenous stroma: wavy fibre bundles, looser in places."""
    # bundles bend over ~150 um, single fibres crimp over ~20 um
    warp = (_smooth_noise(rng, shape, 150 * ppu) * (25 * ppu)
            + _smooth_noise(rng, shape, 20 * ppu) * (2.5 * ppu))
    fibres = _fibre_noise(rng, shape, max(3 * ppu, 1.0), 60 * ppu, fibre_angle, warp)
    bundles = _fibre_noise(rng, shape, 15 * ppu, 150 * ppu, fibre_angle, warp)
    grain = _smooth_noise(rng, shape, max(1.5 * ppu, 1.0))
    looseness = 1.0 / (1.0 + np.exp(-(2.5 * _smooth_noise(rng, shape, 200 * ppu) - 0.5)))
    gaps = looseness * np.clip(-0.6 - fibres, 0.0, 1.0)
    density = 0.6 + 0.22 * np.tanh(fibres) + 0.15 * np.tanh(bundles) + 0.08 * grain
    return (0.9 * density * (1.0 - gaps)).astype(np.float32)


def _fat(rng, shape, ppu):
    """Adipocytes: white polygons (Voronoi cells) with thin membranes, in patches."""
    amount = rng.choice([0.0, 0.0, 0.15, 0.35])
    if amount == 0.0:
        return np.zeros(shape, bool)
    # patch size relative to the field: at any magnification the photographed
    # field shows tissue, with fat in a part of it
    patch_field = _smooth_noise(rng, shape, 0.5 * max(shape))
    patch = patch_field > np.quantile(patch_field, 1 - amount)
    seeds = _lattice(rng, shape, 75 * ppu, 0.0, 1.0, jitter=0.45)
    label_of_seed = np.zeros(shape, np.int32)
    label_of_seed[seeds[:, 0], seeds[:, 1]] = np.arange(1, len(seeds) + 1)
    _, (nearest_r, nearest_c) = ndimage.distance_transform_edt(label_of_seed == 0, return_indices=True)
    cells = label_of_seed[nearest_r, nearest_c]
    cells = np.where(patch, cells, 0)  # the patch border is a membrane too
    edges = np.zeros(shape, bool)
    edges[:-1] |= cells[:-1] != cells[1:]
    edges[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    membrane = ndimage.distance_transform_edt(~edges) < max(1.0 * ppu, 0.5)
    return patch & ~membrane


def _slide_gaps(rng, shape, ppu):
    """Tissue tears and the slide edge: irregular empty areas."""
    field = _smooth_noise(rng, shape, 250 * ppu) + 0.25 * _smooth_noise(rng, shape, 25 * ppu)
    return field > rng.uniform(1.3, 2.5)


def _chromatin(rng, shape, ppu):
    """Multiplicative texture of nuclear staining (chromatin clumps)."""
    return 0.8 + 0.2 * np.clip(_smooth_noise(rng, shape, max(1.5 * ppu, 1.0)), -2.5, 2.5)


def _lattice(rng, shape, spacing, angle, stretch, jitter=0.3):
    """Jittered hexagonal lattice over the image, as integer (row, col) points.

    ``spacing`` px between rows, ``spacing * stretch`` px between neighbours
    along the direction ``angle``.
    """
    half = 0.5 * np.hypot(*shape) + spacing
    along = np.arange(-half, half, spacing * stretch)
    across = np.arange(-half, half, spacing)
    u, v = np.meshgrid(along, across)
    u = u + 0.5 * spacing * stretch * (np.arange(len(across))[:, None] % 2)
    u = u + rng.uniform(-jitter, jitter, u.shape) * spacing * stretch
    v = v + rng.uniform(-jitter, jitter, v.shape) * spacing
    rows = shape[0] / 2 + u * np.sin(angle) + v * np.cos(angle)
    cols = shape[1] / 2 + u * np.cos(angle) - v * np.sin(angle)
    points = np.stack([rows.ravel(), cols.ravel()], axis=1)
    inside = ((points[:, 0] >= 0) & (points[:, 0] <= shape[0] - 1)
              & (points[:, 1] >= 0) & (points[:, 1] <= shape[1] - 1))
    return np.rint(points[inside]).astype(np.intp)


# --------------------------------------------------------------------------- nuclei

def _nuclei(rows, cols, semi_major, semi_minor, angle, darkness, wobble):
    """Bundle nucleus parameters (pixels, radians) into a dict of float arrays."""
    n = len(rows)
    return {key: np.broadcast_to(np.asarray(value, np.float32), (n,)).copy()
            for key, value in dict(rows=rows, cols=cols, semi_major=semi_major, semi_minor=semi_minor,
                                   angle=angle, darkness=darkness, wobble=wobble).items()}


def _concat_nuclei(populations):
    """Join nucleus dicts."""
    populations = [p for p in populations if len(p["rows"])]
    if not populations:
        return _nuclei([], [], 1, 1, 0, 0, 0)
    return {key: np.concatenate([p[key] for p in populations]) for key in populations[0]}


def _rasterise_ellipses(shape, nuclei):
    """Soft-edged, slightly irregular ellipses.

    Returns flat pixel indices, coverage (0-1), depth inside the outline as a
    fraction of the semi-minor axis, and the index of the nucleus of each pixel.
    """
    reach = int(np.ceil(np.max(nuclei["semi_major"], initial=0) * 1.25)) + 1
    visible = ((nuclei["rows"] > -reach) & (nuclei["rows"] < shape[0] + reach)
               & (nuclei["cols"] > -reach) & (nuclei["cols"] < shape[1] + reach))
    index = np.flatnonzero(visible)
    if len(index) == 0:
        return (np.empty(0, np.intp), np.empty(0, np.float32), np.empty(0, np.float32),
                np.empty(0, np.intp))
    rows, cols = nuclei["rows"][index], nuclei["cols"][index]
    semi_major = nuclei["semi_major"][index][:, None, None]
    semi_minor = nuclei["semi_minor"][index][:, None, None]
    offsets = np.arange(-reach, reach + 1)
    base_r, base_c = np.floor(rows), np.floor(cols)
    dr = (base_r - rows)[:, None, None] + offsets.astype(np.float32)[None, :, None]
    dc = (base_c - cols)[:, None, None] + offsets.astype(np.float32)[None, None, :]
    cos = np.cos(nuclei["angle"][index])[:, None, None]
    sin = np.sin(nuclei["angle"][index])[:, None, None]
    along = (dc * cos + dr * sin) / semi_major
    across = (dr * cos - dc * sin) / semi_minor
    rho = np.sqrt(along * along + across * across)
    # Irregular outline: 2nd and 3rd angular harmonics with a per-nucleus phase,
    # computed from cos/sin of the polar angle (cheaper than arctan2 + cos).
    c, s = along / np.maximum(rho, 1e-6), across / np.maximum(rho, 1e-6)
    phase = (index.astype(np.float32) * 2.399)[:, None, None]
    harmonic2 = (c * c - s * s) * np.cos(phase) - 2 * c * s * np.sin(phase)
    harmonic3 = c * (4 * c * c - 3) * np.cos(2 * phase) - s * (3 - 4 * s * s) * np.sin(2 * phase)
    outline = 1.0 + nuclei["wobble"][index][:, None, None] * (0.6 * harmonic2 + 0.4 * harmonic3)
    signed_distance = (1.0 - rho / outline) * semi_minor
    pix_r = base_r.astype(np.intp)[:, None, None] + offsets[None, :, None]
    pix_c = base_c.astype(np.intp)[:, None, None] + offsets[None, None, :]
    keep = ((signed_distance > -0.5) & (pix_r >= 0) & (pix_r < shape[0])
            & (pix_c >= 0) & (pix_c < shape[1]))
    pix_r, pix_c = np.broadcast_arrays(pix_r, pix_c)
    owner = np.broadcast_to(index[:, None, None], keep.shape)[keep]
    flat = pix_r[keep] * shape[1] + pix_c[keep]
    distance = signed_distance[keep]
    coverage = np.clip(distance + 0.5, 0.0, 1.0)
    depth = np.maximum(distance, 0) / nuclei["semi_minor"][owner]
    return flat, coverage.astype(np.float32), depth.astype(np.float32), owner


def _paint_nuclei(haematoxylin, eosin, nuclei, chromatin):
    """Stamp nuclei into the stain maps (darkest nucleus wins where they overlap)."""
    flat, coverage, depth, index = _rasterise_ellipses(haematoxylin.shape, nuclei)
    # chromatin condenses on the nuclear membrane: a darker rim
    rim = 0.8 + 0.35 * np.exp(-depth / 0.15)
    value = coverage * rim * nuclei["darkness"][index] * chromatin.ravel()[flat]
    h, e = haematoxylin.ravel(), eosin.ravel()
    np.maximum.at(h, flat, value)
    # nuclei carry little eosin; the last writer wins, which is fine for a tint
    e[flat] = e[flat] * (1.0 - 0.7 * coverage) + 0.12 * coverage


def _paint_cover(haematoxylin, eosin, cover, haematoxylin_value, eosin_value):
    """Blend a uniform stain (e.g. cytoplasm) over the maps where ``cover`` > 0."""
    haematoxylin += cover * (haematoxylin_value - haematoxylin)
    eosin += cover * (eosin_value - eosin)


def _paint_lumina(rng, haematoxylin, eosin, white_cover):
    """Clear lumina, fat and gaps, leaving a faint pink in places (secretion, serum)."""
    shape = white_cover.shape
    residue = 0.015 * (1.0 + 0.3 * _smooth_noise(rng, shape, 0.05 * max(shape)))
    _paint_cover(haematoxylin, eosin, white_cover, 0.0, 0.0)
    eosin += white_cover * residue.astype(np.float32)


def _paint_mucin(rng, haematoxylin, eosin, mucin, ppu):
    """Pale blue-grey, wispy extracellular mucin."""
    if not mucin.any():
        return
    wisps = 0.5 + 0.5 * np.clip(_smooth_noise(rng, mucin.shape, 12 * ppu), -1, 1)
    cover = mucin.astype(np.float32)
    _paint_cover(haematoxylin, eosin, cover * 0.9, 0.0, 0.0)
    haematoxylin += cover * 0.9 * (0.08 + 0.03 * wisps)
    eosin += cover * 0.9 * (0.05 + 0.02 * wisps)


def _stromal_nuclei(rng, shape, ppu, stroma, fibre_angle, cellularity):
    """Spindle fibroblast nuclei along the fibres, and a few round lymphocytes."""
    fibroblasts = _lattice(rng, shape, 28 * ppu / np.sqrt(cellularity), fibre_angle, 1.6, jitter=0.5)
    fibroblasts = fibroblasts[stroma[fibroblasts[:, 0], fibroblasts[:, 1]]]
    n = len(fibroblasts)
    spindle = _nuclei(fibroblasts[:, 0] + rng.uniform(0, 1, n), fibroblasts[:, 1] + rng.uniform(0, 1, n),
                      semi_major=rng.uniform(5.0, 8.0, n) * ppu, semi_minor=rng.uniform(1.3, 2.2, n) * ppu,
                      angle=fibre_angle + rng.normal(0, 0.25, n), darkness=rng.uniform(0.8, 1.1, n),
                      wobble=0.05)
    lymphocytes = _lattice(rng, shape, 45 * ppu, 0.0, 1.0, jitter=0.5)
    lymphocytes = lymphocytes[stroma[lymphocytes[:, 0], lymphocytes[:, 1]]]
    lymphocytes = lymphocytes[rng.random(len(lymphocytes)) < 0.25 * cellularity]
    m = len(lymphocytes)
    round_ = _nuclei(lymphocytes[:, 0], lymphocytes[:, 1], semi_major=rng.uniform(2.6, 3.2, m) * ppu,
                     semi_minor=rng.uniform(2.4, 2.9, m) * ppu, angle=rng.uniform(0, np.pi, m),
                     darkness=rng.uniform(1.3, 1.5, m), wobble=0.03)
    return [spindle, round_]


# --------------------------------------------------------------------------- glands

def _gland_layout(rng, shape, ppu, architecture, fibre_angle, forbidden, required):
    """Glands as (centre px, semi-major px, semi-minor px, angle), in lobules, not overlapping."""
    area_mm2 = shape[0] * shape[1] / ppu**2 / 1e6
    n_lobules = rng.poisson(architecture["lobules_per_mm2"] * area_mm2 * 1.5)
    if required:
        # A pathologist photographs a field with something in it: at high
        # magnification make sure one lobule is centred inside the view.
        n_lobules = max(n_lobules, 1)
    lobule_radius = architecture["lobule_radius"] * ppu
    elongated = architecture["aspect"][0] > 2
    centres, majors, minors, angles = np.empty((0, 2)), np.empty(0), np.empty(0), np.empty(0)
    for lobule in range(n_lobules):
        if lobule == 0 and required:
            lobule_centre = rng.uniform(0.3, 0.7, 2) * shape
        else:
            lobule_centre = rng.uniform(-0.1, 1.1, 2) * shape
        for _ in range(rng.integers(*architecture["glands"], endpoint=True)):
            minor = rng.uniform(*architecture["minor"]) * ppu
            major = minor * rng.uniform(*architecture["aspect"])
            # compressed ducts follow the stroma; acini point anywhere
            angle = fibre_angle + rng.normal(0, 0.3) if elongated else rng.uniform(0, np.pi)
            for _attempt in range(20):
                centre = lobule_centre + rng.normal(0, lobule_radius / 2, 2) * (len(majors) > 0)
                offset = centre - centres
                direction = np.arctan2(offset[:, 0], offset[:, 1])
                # 1.15: room for the irregular outline; 3 um of stroma between glands
                needed = 1.15 * (_ellipse_radius(major, minor, angle, direction)
                                 + _ellipse_radius(majors, minors, angles, direction)) + 3 * ppu
                r, c = np.rint(centre).astype(int)
                blocked = 0 <= r < shape[0] and 0 <= c < shape[1] and forbidden[r, c]
                if np.all(np.hypot(offset[:, 0], offset[:, 1]) > needed) and not blocked:
                    centres = np.vstack([centres, centre])
                    majors, minors, angles = (np.append(majors, major), np.append(minors, minor),
                                              np.append(angles, angle))
                    break
    return list(zip(centres, majors, minors, angles))


def _ellipse_radius(major, minor, axis_angle, direction):
    """Distance from an ellipse's centre to its outline in ``direction`` (radians)."""
    t = direction - axis_angle
    return major * minor / np.hypot(minor * np.cos(t), major * np.sin(t))


def _glands(rng, shape, ppu, architecture, fibre_angle, forbidden, required):
    """Rasterise glands: epithelium coverage, lumen coverage and bilayer nuclei."""
    epithelium = np.zeros(shape, np.float32)
    lumen = np.zeros(shape, np.float32)
    luminal, myoepithelial = [], []
    layout = _gland_layout(rng, shape, ppu, architecture, fibre_angle, forbidden, required)
    for centre, major, minor, angle in layout:
        harmonics = rng.normal(0, 0.05, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        lumen_level = max(0.0, 1.0 - _EPITHELIUM_RIM_UM * ppu / minor) * rng.uniform(0.7, 1.1)
        _stamp_gland(epithelium, lumen, centre, major, minor, angle, harmonics, phases, lumen_level)
        luminal.append(_ring_nuclei(rng, centre, major, minor, angle, harmonics, phases,
                                    level=1.0 - 8.0 * ppu / minor, spacing=7.0 * ppu,
                                    size=(3.8 * ppu, 3.0 * ppu), radial=True, darkness=(0.9, 1.1),
                                    scatter=1.2 * ppu))
        myoepithelial.append(_ring_nuclei(rng, centre, major, minor, angle, harmonics, phases,
                                          level=1.0 - 2.0 * ppu / minor, spacing=13.0 * ppu,
                                          size=(4.5 * ppu, 1.5 * ppu), radial=False, darkness=(1.0, 1.2),
                                          scatter=0.3 * ppu))
    nuclei = [_concat_nuclei(luminal), _concat_nuclei(myoepithelial)]
    for population in nuclei:
        r = np.clip(np.rint(population["rows"]).astype(int), 0, shape[0] - 1)
        c = np.clip(np.rint(population["cols"]).astype(int), 0, shape[1] - 1)
        keep = ~forbidden[r, c]
        for key in population:
            population[key] = population[key][keep]
    epithelium *= ~forbidden
    lumen *= ~forbidden
    return epithelium, lumen, nuclei


def _outline(theta, harmonics, phases):
    """Radial scale of a gland outline at polar angle ``theta`` (1 = ellipse)."""
    k = np.arange(2, 2 + len(harmonics))
    return 1.0 + np.sum(harmonics * np.cos(np.multiply.outer(theta, k) + phases), axis=-1)


def _stamp_gland(epithelium, lumen, centre, major, minor, angle, harmonics, phases, lumen_level):
    """Draw one gland into the epithelium and lumen coverage maps (max-combined)."""
    reach = major * 1.3 + 2
    r0, r1 = max(int(centre[0] - reach), 0), min(int(centre[0] + reach) + 1, epithelium.shape[0])
    c0, c1 = max(int(centre[1] - reach), 0), min(int(centre[1] + reach) + 1, epithelium.shape[1])
    if r0 >= r1 or c0 >= c1:
        return
    rows, cols = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dr, dc = rows - centre[0], cols - centre[1]
    along = (dc * np.cos(angle) + dr * np.sin(angle)) / major
    across = (-dc * np.sin(angle) + dr * np.cos(angle)) / minor
    level = np.hypot(along, across) / _outline(np.arctan2(across, along), harmonics, phases)
    window = (slice(r0, r1), slice(c0, c1))
    epithelium[window] = np.maximum(epithelium[window], np.clip((1.0 - level) * minor + 0.5, 0, 1))
    if lumen_level > 0:
        lumen[window] = np.maximum(lumen[window], np.clip((lumen_level - level) * minor + 0.5, 0, 1))


def _ring_nuclei(rng, centre, major, minor, angle, harmonics, phases, level, spacing, size, radial,
                 darkness, scatter):
    """Nuclei evenly spaced along the contour ``level`` of a gland outline.

    ``scatter`` (px) is the spread of the nuclei across the contour: luminal
    nuclei are not perfectly lined up.
    """
    if level <= 0:
        return _nuclei([], [], 1, 1, 0, 0, 0)
    theta = np.linspace(0, 2 * np.pi, 721)
    scale = level * _outline(theta, harmonics, phases)
    along, across = major * scale * np.cos(theta), minor * scale * np.sin(theta)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(along), np.diff(across)))])
    count = max(int(arc[-1] / spacing), 3)
    targets = (np.arange(count) + rng.uniform(-0.2, 0.2, count) + rng.uniform()) * arc[-1] / count
    t = np.interp(targets % arc[-1], arc, theta)
    a = np.interp(t, theta, along)
    b = np.interp(t, theta, across)
    tangent = np.arctan2(np.gradient(across)[np.searchsorted(theta, t) % 720],
                         np.gradient(along)[np.searchsorted(theta, t) % 720])
    shift = rng.normal(0.0, scatter, count)
    a, b = a - shift * np.sin(tangent), b + shift * np.cos(tangent)
    rows = centre[0] + a * np.sin(angle) + b * np.cos(angle)
    cols = centre[1] + a * np.cos(angle) - b * np.sin(angle)
    orientation = angle + tangent + (np.pi / 2 if radial else 0.0)
    jitter = rng.normal(1.0, 0.06, count)
    return _nuclei(rows, cols, size[0] * jitter, size[1] * jitter, orientation,
                   rng.uniform(*darkness, count), wobble=0.03)


# --------------------------------------------------------------------------- carcinoma

def _tumour_region(rng, shape):
    """One irregular blob covering 35-80 % of the field: the malignant region."""
    rows, cols = _grid(shape)
    centre = rng.uniform(0.3, 0.7, 2) * shape
    distance = np.hypot((rows - centre[0]) / shape[0], (cols - centre[1]) / shape[1])
    score = (0.35 * _smooth_noise(rng, shape, 0.5 * max(shape))
             + 0.12 * _smooth_noise(rng, shape, 0.1 * max(shape)) - distance)
    region = score > np.quantile(score, 1.0 - rng.uniform(0.35, 0.8))
    labels, count = ndimage.label(region)
    if count > 1:
        sizes = ndimage.sum_labels(region, labels, index=np.arange(1, count + 1))
        region = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(region)


def _carcinoma(rng, shape, ppu, subtype, tumour, fibre_angle, magnification):
    """Carcinoma inside the tumour region: (white, cytoplasm, mucin, nucleus populations)."""
    white, cells, mucin = _carcinoma_architecture(rng, shape, ppu, subtype, tumour, fibre_angle)
    nuclei = _tumour_nuclei(rng, shape, ppu, subtype, cells)
    if subtype == "LC":
        # discohesive cells: each nucleus keeps its own thin rim of cytoplasm
        halo = dict(nuclei, semi_major=nuclei["semi_major"] * 1.8,
                    semi_minor=nuclei["semi_minor"] * 1.8, wobble=np.zeros_like(nuclei["wobble"]))
        flat, coverage, _, _ = _rasterise_ellipses(shape, halo)
        cytoplasm = np.zeros(shape, np.float32)
        np.maximum.at(cytoplasm.reshape(-1), flat, coverage)
    else:
        cytoplasm = ndimage.gaussian_filter(cells.astype(np.float32), 0.5)
    populations = [nuclei]
    if magnification >= 200:
        populations.append(_nucleoli(rng, nuclei))
    return white, cytoplasm, mucin, populations


def _carcinoma_architecture(rng, shape, ppu, subtype, tumour, fibre_angle):
    """Growth pattern of each subtype: (white, tumour-cell, mucin) masks."""
    white = np.zeros(shape, bool)
    mucin = np.zeros(shape, bool)
    if subtype == "DC":  # solid nests with retraction clefts and a few cribriform spaces
        nests = tumour & (_smooth_noise(rng, shape, 160 * ppu) > -0.6)
        outside = ndimage.distance_transform_edt(~nests)
        white |= tumour & (outside > 0) & (outside < max(4 * ppu, 1.5)) & (
            _smooth_noise(rng, shape, 40 * ppu) > 0.0)
        white |= nests & (_smooth_noise(rng, shape, 25 * ppu) > 2.2)
        cells = nests & ~white
    elif subtype == "PC":  # fronds: epithelium on both sides of thin fibrovascular cores
        fronds = np.abs(_smooth_noise(rng, shape, 200 * ppu))
        cores = tumour & (fronds < 0.15)
        cells = tumour & ~cores & (fronds < 0.8)
        white |= tumour & (fronds >= 0.8)
    elif subtype == "MC":  # cell clusters floating in lakes of mucin split by thin septa
        clusters = _smooth_noise(rng, shape, 60 * ppu)
        septa = np.abs(_smooth_noise(rng, shape, 150 * ppu)) < 0.05
        cells = tumour & (clusters > 1.0)
        mucin = tumour & ~cells & ~septa
    else:  # LC: cells infiltrate the stroma in single file along the fibres
        warp = _smooth_noise(rng, shape, 150 * ppu) * (25 * ppu)
        cords = np.abs(_fibre_noise(rng, shape, 12 * ppu, 120 * ppu, fibre_angle, warp)) < 0.12
        cells = tumour & cords
    return white, cells, mucin


def _tumour_nuclei(rng, shape, ppu, subtype, cells):
    """Crowded, enlarged, pleomorphic, hyperchromatic nuclei filling the ``cells`` mask."""
    params = _TUMOUR_CELLS[subtype]
    diameter = NUCLEUS_DIAMETER_UM * params["enlarge"] * ppu
    points = _lattice(rng, shape, params["spacing"] * diameter, rng.uniform(0, np.pi), 1.0, jitter=0.3)
    points = points[cells[points[:, 0], points[:, 1]]]
    n = len(points)
    size = diameter / 2 * np.clip(rng.lognormal(0, params["spread"], n), 0.6, 2.0)
    aspect = rng.uniform(1.0, params["aspect"], n)
    return _nuclei(points[:, 0] + rng.uniform(0, 1, n), points[:, 1] + rng.uniform(0, 1, n),
                   semi_major=size * np.sqrt(aspect), semi_minor=size / np.sqrt(aspect),
                   angle=rng.uniform(0, np.pi, n), darkness=rng.uniform(1.0, 1.45, n),
                   wobble=rng.uniform(0.03, 0.1 + params["spread"] / 2, n))


def _nucleoli(rng, nuclei):
    """Prominent nucleoli in most tumour nuclei (visible at 200X and 400X)."""
    chosen = rng.random(len(nuclei["rows"])) < 0.6
    n = int(chosen.sum())
    radius = nuclei["semi_minor"][chosen]
    offset = rng.uniform(0, 0.35, n) * radius
    direction = rng.uniform(0, 2 * np.pi, n)
    size = 0.18 * radius
    return _nuclei(nuclei["rows"][chosen] + offset * np.sin(direction),
                   nuclei["cols"][chosen] + offset * np.cos(direction),
                   semi_major=size, semi_minor=size, angle=0.0,
                   darkness=nuclei["darkness"][chosen] * 1.6, wobble=0.0)


# --------------------------------------------------------------------------- optics

def _render(rng, haematoxylin, eosin, tissue, magnification):
    """Stain densities to an 8-bit RGB micrograph (Beer-Lambert, blur, vignetting, noise)."""
    shape = haematoxylin.shape
    eosin_strength = rng.uniform(0.45, 1.15)
    haematoxylin_strength = rng.uniform(0.85, 1.2)
    grey = rng.uniform(0.0, 0.35) * tissue
    density = (haematoxylin[..., None] * (haematoxylin_strength * _OD_HAEMATOXYLIN)
               + eosin[..., None] * (eosin_strength * _OD_EOSIN)
               + grey[..., None] * _OD_GREY + _OD_GLASS)
    light = 255.0 * np.exp(-density)
    # the optics soften more at high magnification (shallower depth of field)
    sigma = 0.7 + 0.35 * magnification / 100.0
    light = ndimage.gaussian_filter(light, (sigma, sigma, 0))
    rows, cols = _grid(shape)
    radius2 = ((rows - shape[0] / 2) / shape[0]) ** 2 + ((cols - shape[1] / 2) / shape[1]) ** 2
    light *= (1.0 - rng.uniform(0.05, 0.2) * radius2)[..., None].astype(np.float32)
    light += 2.0 * rng.standard_normal(light.shape, dtype=np.float32)
    return np.clip(np.rint(light), 0, 255).astype(np.uint8)
