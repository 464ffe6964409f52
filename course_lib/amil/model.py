"""Attention-based deep multiple-instance learning (Ilse, Tomczak and Welling, ICML 2018).

A bag of instances x_1..x_N (here: 28 x 28 patches of one histology image) goes
through three steps:

1. an instance feature extractor, the same for every instance: h_i in R^L;
2. attention pooling: a score per instance, softmax over the bag, and the bag
   vector z = sum_i a_i h_i, with

   - attention (non-gated): s_i = w^T tanh(V h_i + b_V) + b_w
   - gated attention:       s_i = w^T (tanh(V h_i + b_V) * sigmoid(U h_i + b_U)) + b_w

3. a classifier on z: the bag's probability of being malignant.

:class:`AttentionMIL` with its defaults is the model of Patil et al.
(WIECON-ECE 2019): LeNet-style instance features (L = 500), D = 128, one
attention branch (K = 1), non-gated: 491,828 parameters. ``gated=True`` gives
Ilse et al.'s gated variant. Bags may be padded (``mask``): padded instances
get exactly zero attention, so a batch of padded bags gives the same outputs,
loss and gradients as the bags one at a time.

Optionally (``attention_smoothing`` > 0, not in the study) the scores s_i are
smoothed over the patch grid before the softmax, with the Sm operator of
Castro-Macias et al. (NeurIPS 2024): u = (1 - alpha) s + alpha * (mean of u
over each patch's 4 grid neighbours), iterated from u = s. A tumour is a
region, not a scatter of patches, so a patch next to high-scoring patches
is pulled up; it has no parameters.
"""

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MILOutput", "instance_features", "smooth_over_grid", "AttentionPooling", "AttentionMIL", "vector_mil",
           "bag_nll", "PROBABILITY_CLAMP", "SMOOTHING_STEPS"]

#: The study clamps the bag probability before the log-likelihood.
PROBABILITY_CLAMP = 1e-5

#: Iterations of the Sm operator: the part of the scores left out after them shrinks as alpha ** steps
#: (0.001 at alpha 0.5).
SMOOTHING_STEPS = 10


@dataclass
class MILOutput:
    """What :class:`AttentionMIL` returns for a batch of B bags of N instances."""

    logit: torch.Tensor  # (B,)
    probability: torch.Tensor  # (B,) sigmoid(logit)
    attention: torch.Tensor  # (B, N) softmax weights, 0 on padded instances, each row sums to 1


def instance_features(channels=3):
    """The study's instance feature extractor: (n, 3, 28, 28) patches -> (n, 500).

    Conv 5x5 (20) - ReLU - max-pool 2 - conv 5x5 (50) - ReLU - max-pool 2 -
    flatten (800) - linear 500 - ReLU (LeNet-5 widths, as in Ilse et al.).
    """
    return nn.Sequential(
        nn.Conv2d(channels, 20, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(50 * 4 * 4, 500), nn.ReLU(),
    )


def smooth_over_grid(scores, grid, alpha, mask=None, steps=SMOOTHING_STEPS):
    """The Sm operator on (B, N) ``scores`` of patches laid out row-major on a ``grid`` (rows, cols).

    ``steps`` times: u = (1 - alpha) scores + alpha * (mean of u over each patch's up, down, left
    and right neighbours on the grid), starting from u = scores. Padded instances (``mask`` False)
    are nobody's neighbour; a patch without real neighbours keeps its own value.

    >>> s = torch.zeros(1, 9); s[0, 4] = 1.0           # one high score in the middle of a 3 x 3 grid
    >>> u = smooth_over_grid(s, (3, 3), alpha=0.5)
    >>> [round(v, 3) for v in u[0, [4, 1, 0]].tolist()]  # centre, a side, a corner
    [0.556, 0.111, 0.056]
    """
    rows, cols = grid
    if scores.shape[-1] != rows * cols:
        raise ValueError(f"attention smoothing needs bags of {rows} x {cols} = {rows * cols} patches laid out on "
                         f"the grid, got {scores.shape[-1]}")
    real = (torch.ones_like(scores) if mask is None else mask.to(scores.dtype)).reshape(-1, 1, rows, cols)
    neighbours = scores.new_tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).reshape(1, 1, 3, 3)
    count = nn.functional.conv2d(real, neighbours, padding=1)
    start = scores.reshape(-1, 1, rows, cols)
    smoothed = start
    for _ in range(steps):
        total = nn.functional.conv2d(smoothed * real, neighbours, padding=1)
        mean = torch.where(count > 0, total / count.clamp_min(1.0), smoothed)
        smoothed = (1.0 - alpha) * start + alpha * mean
    return smoothed.reshape(scores.shape)


class AttentionPooling(nn.Module):
    """a = softmax over the bag of w^T tanh(V h) (optionally gated by sigmoid(U h)); z = sum a_i h_i.

    With ``smoothing`` alpha > 0 the scores are first smoothed over the patch ``grid``
    (:func:`smooth_over_grid`).
    """

    def __init__(self, feature_dim=500, attention_dim=128, gated=False, grid=None, smoothing=0.0):
        super().__init__()
        if smoothing and grid is None:
            raise ValueError("attention smoothing needs the patch grid (rows, cols) of the bags")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"attention smoothing alpha must be in [0, 1), got {smoothing}")
        self.V = nn.Linear(feature_dim, attention_dim)
        self.U = nn.Linear(feature_dim, attention_dim) if gated else None
        self.w = nn.Linear(attention_dim, 1)
        self.grid, self.smoothing = grid, smoothing

    @property
    def gated(self):
        return self.U is not None

    def scores(self, features):
        """(B, N, L) instance features -> (B, N) attention scores before the softmax."""
        hidden = torch.tanh(self.V(features))
        if self.gated:
            hidden = hidden * torch.sigmoid(self.U(features))
        return self.w(hidden).squeeze(-1)

    def forward(self, features, mask=None):
        """Returns ``(z, attention)``: (B, L) bag vectors and (B, N) weights."""
        scores = self.scores(features)
        if self.smoothing:
            scores = smooth_over_grid(scores, self.grid, self.smoothing, mask)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        attention = torch.softmax(scores, dim=1)
        return torch.einsum("bn,bnl->bl", attention, features), attention


class AttentionMIL(nn.Module):
    """Attention MIL classifier of bags: instance features, attention pooling, linear + sigmoid.

    Parameters
    ----------
    gated : bool
        Gated attention (Ilse et al.) instead of the study's plain tanh attention.
    feature_extractor : nn.Module, optional
        Maps (n, *instance shape) to (n, feature_dim); the study's
        :func:`instance_features` by default.
    feature_dim, attention_dim : int
        L and D of Ilse et al.
    centre_inputs : bool
        Map instance values from [0, 1] to [-1, 1] before the extractor (no
        parameters). Not in the study, which feeds [0, 1]; it makes training
        from scratch several times faster, so the kit's weights use it (their
        model card says so).
    grid : (rows, cols), optional
        How a bag's patches lie on the image (row-major), e.g.
        ``course_lib.amil.data.grid_shape()``; needed by ``attention_smoothing``.
    attention_smoothing : float
        alpha of :func:`smooth_over_grid` on the attention scores (0: none, the
        study; no parameters either way).

    >>> sum(p.numel() for p in AttentionMIL().parameters())
    491828
    """

    def __init__(self, gated=False, feature_extractor=None, feature_dim=500, attention_dim=128,
                 centre_inputs=False, grid=None, attention_smoothing=0.0):
        super().__init__()
        self.centre_inputs = centre_inputs
        self.feature_extractor = feature_extractor if feature_extractor is not None else instance_features()
        self.pooling = AttentionPooling(feature_dim, attention_dim, gated, grid, attention_smoothing)
        self.classifier = nn.Linear(feature_dim, 1)

    def features(self, bags, mask=None):
        """(B, N, ...) bags -> (B, N, L) instance features; padded instances are left at zero."""
        if self.centre_inputs:
            bags = 2.0 * bags - 1.0
        if mask is None:
            flat = self.feature_extractor(bags.flatten(0, 1))
            return flat.reshape(bags.shape[0], bags.shape[1], -1)
        real = self.feature_extractor(bags[mask])
        features = real.new_zeros(mask.shape + real.shape[-1:])
        features[mask] = real
        return features

    def forward(self, bags, mask=None):
        """``bags``: (B, N, ...) or one bag (N, ...); ``mask``: (B, N) bool, True = real instance."""
        if mask is None and bags.dim() == self._instance_dims() + 1:
            bags = bags.unsqueeze(0)
        z, attention = self.pooling(self.features(bags, mask), mask)
        logit = self.classifier(z).squeeze(-1)
        return MILOutput(logit=logit, probability=torch.sigmoid(logit), attention=attention)

    def _instance_dims(self):
        """Number of dimensions of one instance: 3 for image patches, 1 for feature vectors."""
        first = next(m for m in self.feature_extractor.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        return 3 if isinstance(first, nn.Conv2d) else 1


def vector_mil(in_features, hidden=32, attention_dim=16, gated=False):
    """Attention MIL for bags of feature vectors (e.g. UCSB's 708 features): linear + ReLU instances."""
    extractor = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
    return AttentionMIL(gated=gated, feature_extractor=extractor, feature_dim=hidden, attention_dim=attention_dim)


def bag_nll(probability, labels):
    """Per-bag Bernoulli negative log-likelihood, probability clamped to [1e-5, 1 - 1e-5] as in the study."""
    p = probability.clamp(PROBABILITY_CLAMP, 1.0 - PROBABILITY_CLAMP)
    labels = labels.to(p.dtype)
    return -(labels * torch.log(p) + (1.0 - labels) * torch.log(1.0 - p))
