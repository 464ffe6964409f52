"""The exercises of notebook ``05_gmic_saliency``, with their checks (see :mod:`course_lib.exercises`).

>>> EXERCISES.check("05.1", 28)
05.1: not yet. Hint: The kit's phantom model reads a 768x512 window: count its saliency cells first (a stride of 64), then take 2 % of them, rounded.
>>> EXERCISES.check("05.1", 2).passed
True
"""

from course_lib.exercises import ExerciseSet

__all__ = ["EXERCISES"]

EXERCISES = ExerciseSet("05")

QUARTER_WINDOW = (768, 512)
QUARTER_CROP = (128, 128)
STRIDE = 64


@EXERCISES.exercise(
    "05.1",
    hint=("The kit's phantom model reads a 768x512 window: count its saliency cells first (a stride of 64), "
          "then take 2 % of them, rounded."),
    wrong_answers=(28, 1.92, 96, 0.02),
)
def _(answer):
    cells = (QUARTER_WINDOW[0] // STRIDE) * (QUARTER_WINDOW[1] // STRIDE)
    return isinstance(answer, int) and answer == round(cells * 0.02)


@EXERCISES.exercise(
    "05.2",
    hint=("One crop's area over the window's area, as a fraction (not a percentage), for the QUARTER-scale "
          "model: 128x128 crops in a 768x512 window."),
    wrong_answers=(256 * 256 / (2944 * 1920), 4.17, 0.25),
)
def _(answer):
    expected = QUARTER_CROP[0] * QUARTER_CROP[1] / (QUARTER_WINDOW[0] * QUARTER_WINDOW[1])
    return abs(float(answer) - expected) < 5e-4


def _random_maps(seed=0, shape=(3, 2, 12, 8)):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator)


@EXERCISES.exercise(
    "05.3",
    hint=("For each image and class, sort the h*w saliency values, keep the round(h*w*t) largest and average "
          "them: the result is (N, C). torch.topk or flatten(2).sort() help."),
    wrong_answers=(lambda maps, t: maps.amax(dim=(2, 3)), lambda maps, t: maps.mean(dim=(2, 3)),
                   lambda maps, t: maps.flatten(2).topk(max(1, int(maps[0, 0].numel() * t)), dim=-1).values.sum(-1)),
)
def _(top_t):
    import torch

    from course_lib.gmic.model import top_t_pool

    for t, shape in ((0.03, (3, 2, 12, 8)), (0.02, (2, 2, 46, 30)), (0.1, (1, 2, 12, 8))):
        maps = _random_maps(1, shape)
        count = round(shape[2] * shape[3] * t)
        got = torch.as_tensor(top_t(maps, t))
        if got.shape != (shape[0], shape[1]) or not torch.allclose(got, top_t_pool(maps, count), atol=1e-6):
            return False
    return True


def _attention_case():
    import torch

    from course_lib.gmic.weights import phantom_model

    model = phantom_model(seed=0).eval()
    h_crops = torch.randn(6, 512, generator=torch.Generator().manual_seed(2)).abs()
    return model, h_crops


@EXERCISES.exercise(
    "05.4",
    hint=("Gated attention has two branches on each crop vector h_k: sigmoid(U h_k) and tanh(V h_k), multiplied "
          "element-wise, then w gives one score per crop; the weights are the softmax of the scores over the "
          "K crops (they sum to 1). Use model.mil_attn_U, model.mil_attn_V, model.mil_attn_w."),
    wrong_answers=(
        lambda h, model: __import__("torch").softmax(model.mil_attn_w(__import__("torch").tanh(
            model.mil_attn_V(h)))[:, 0], dim=0),
        lambda h, model: __import__("torch").sigmoid(model.mil_attn_w(__import__("torch").sigmoid(
            model.mil_attn_U(h)) * __import__("torch").tanh(model.mil_attn_V(h)))[:, 0]),
    ),
)
def _(attention):
    import torch

    model, h_crops = _attention_case()
    with torch.no_grad():
        u, v = model.mil_attn_U(h_crops), model.mil_attn_V(h_crops)
        scores = model.mil_attn_w(torch.sigmoid(u) * torch.tanh(v))[:, 0]  # the formula of GMIC.local_branch
        reference = torch.softmax(scores, dim=0)
        got = torch.as_tensor(attention(h_crops, model)).reshape(-1)
    return got.shape == reference.shape and torch.allclose(got, reference, atol=1e-6)
