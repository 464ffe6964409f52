"""A-MIL model: parameter counts, attention by formula, padded batches, torchmil cross-check."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_lib.amil.model import AttentionMIL, bag_nll, vector_mil  # noqa: E402


def n_parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts():
    model = AttentionMIL()
    assert n_parameters(model) == 491_828
    assert n_parameters(model.feature_extractor) == 26_570 + 400_500
    assert n_parameters(model.pooling) == 64_257 and n_parameters(model.classifier) == 501
    assert n_parameters(AttentionMIL(gated=True)) == 491_828 + 500 * 128 + 128


@pytest.mark.parametrize("gated", [False, True])
def test_attention_follows_the_formula(gated):
    torch.manual_seed(0)
    model = vector_mil(6, hidden=5, attention_dim=4, gated=gated)
    bag = torch.randn(7, 6)
    with torch.no_grad():
        output = model(bag)
    pool = model.pooling
    h = model.feature_extractor(bag)
    hidden = torch.tanh(h @ pool.V.weight.T + pool.V.bias)
    if gated:
        hidden = hidden * torch.sigmoid(h @ pool.U.weight.T + pool.U.bias)
    scores = hidden @ pool.w.weight[0] + pool.w.bias
    a = torch.exp(scores - scores.max()) / torch.exp(scores - scores.max()).sum()
    z = (a[:, None] * h).sum(0)
    logit = z @ model.classifier.weight[0] + model.classifier.bias
    torch.testing.assert_close(output.attention[0], a, rtol=0, atol=1e-6)
    torch.testing.assert_close(output.logit[0], logit[0], rtol=0, atol=1e-6)
    assert abs(float(output.attention.sum()) - 1) < 1e-6


def test_bag_nll_is_clamped():
    loss = bag_nll(torch.tensor([0.0, 1.0, 0.5]), torch.tensor([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(loss.numpy(), [-np.log(1e-5), -np.log(1 - 1e-5), np.log(2)], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("gated", [False, True])
def test_padded_batch_equals_one_bag_at_a_time(gated):
    """Loss and every gradient of a batch of padded bags equal those of the bags one by one."""
    from course_lib.amil.data import pad_bags

    torch.manual_seed(1)
    model = AttentionMIL(gated=gated)
    bags = [torch.rand(n, 3, 28, 28) for n in (5, 9, 2)]
    labels = torch.tensor([1.0, 0.0, 1.0])
    padded, mask = pad_bags(bags)
    output = model(padded, mask)
    assert float(output.attention.detach()[~mask].abs().max()) == 0.0
    batch_loss = bag_nll(output.probability, labels).mean()
    model.zero_grad()
    batch_loss.backward()
    batch_grads = {k: p.grad.clone() for k, p in model.named_parameters()}

    single_loss = 0.0
    model.zero_grad()
    for bag, label in zip(bags, labels):
        loss = bag_nll(model(bag).probability, label[None]).sum() / len(bags)
        loss.backward()  # gradients accumulate: the mean over bags
        single_loss += float(loss)
    assert abs(float(batch_loss) - single_loss) < 1e-6
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(batch_grads[name], parameter.grad, rtol=1e-5, atol=1e-6, msg=name)


TORCHMIL_CHECK = """
import json, sys
import torch
from torchmil.models import ABMIL
from course_lib.amil.data import pad_bags
from course_lib.amil.model import vector_mil

gated = sys.argv[1] == "gated"
torch.manual_seed(2)
ours = vector_mil(12, hidden=8, attention_dim=6, gated=gated).eval()
theirs = ABMIL(in_shape=(8,), att_dim=6, att_act="tanh", gated=gated).eval()
with torch.no_grad():
    theirs.pool.fc1.module.weight.copy_(ours.pooling.V.weight)
    theirs.pool.fc1.module.bias.copy_(ours.pooling.V.bias)
    theirs.pool.fc2.weight.copy_(ours.pooling.w.weight)  # no bias in torchmil: a softmax ignores it
    if gated:
        theirs.pool.fc_gated.module.weight.copy_(ours.pooling.U.weight)
        theirs.pool.fc_gated.module.bias.copy_(ours.pooling.U.bias)
    theirs.classifier.module.weight.copy_(ours.classifier.weight)
    theirs.classifier.module.bias.copy_(ours.classifier.bias)
    padded, mask = pad_bags([torch.randn(n, 12) for n in (4, 7)])
    output = ours(padded, mask)
    logits, scores = theirs(ours.features(padded, mask), mask.float(), return_att=True)
weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
print(json.dumps({"attention": float((weights - output.attention).abs().max()),
                  "logit": float((logits - output.logit).abs().max())}))
"""


@pytest.mark.parametrize("gated", [False, True])
def test_attention_pooling_matches_torchmil(gated):
    """torchmil's ABMIL with our weights gives the same attention and bag logits (within 1e-6).

    Run in a fresh interpreter: torchmil imports tensordict, which aborts the process
    when TensorFlow is already loaded (as the root conftest.py does).
    """
    import importlib.util
    import json
    import subprocess
    import sys

    if importlib.util.find_spec("torchmil") is None:
        pytest.skip("torchmil is not installed")
    run = subprocess.run([sys.executable, "-c", TORCHMIL_CHECK, "gated" if gated else "plain"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    differences = json.loads(run.stdout.strip().splitlines()[-1])
    assert differences["attention"] < 1e-6 and differences["logit"] < 1e-6, differences


# --------------------------------------------------------------------------- attention smoothing

TORCHMIL_SM_CHECK = """
import json
import torch
from torchmil.nn.sm import Sm
from course_lib.amil.model import smooth_over_grid

rows, cols = 4, 5
torch.manual_seed(3)
scores = torch.randn(2, rows * cols)
adjacency = torch.zeros(rows * cols, rows * cols)  # up, down, left and right neighbours, each row a mean
for r in range(rows):
    for c in range(cols):
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            if 0 <= r + dr < rows and 0 <= c + dc < cols:
                adjacency[r * cols + c, (r + dr) * cols + c + dc] = 1.0
adjacency = (adjacency / adjacency.sum(1, keepdim=True)).expand(2, -1, -1).contiguous()
theirs = Sm(alpha=0.5, num_steps=10, mode="approx")(scores.unsqueeze(-1), adjacency).squeeze(-1)
ours = smooth_over_grid(scores, (rows, cols), alpha=0.5, steps=10)
print(json.dumps({"difference": float((theirs - ours).abs().max()), "changed": float((scores - ours).abs().max())}))
"""


def test_smoothing_matches_torchmil_sm():
    """torchmil's Sm operator (approximate mode, row-normalised grid adjacency) agrees within 1e-6.

    At alpha 0.5 only: torchmil maps a float alpha to its own step weight 1 - alpha, which
    is the same number there. A fresh interpreter, as for ABMIL above.
    """
    import importlib.util
    import json
    import subprocess
    import sys

    if importlib.util.find_spec("torchmil") is None:
        pytest.skip("torchmil is not installed")
    run = subprocess.run([sys.executable, "-c", TORCHMIL_SM_CHECK], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["changed"] > 0.1  # the scores were smoothed at all
    assert result["difference"] < 1e-6, result


def test_smoothing_ignores_padded_instances_and_keeps_the_parameter_count():
    from course_lib.amil.model import smooth_over_grid

    torch.manual_seed(4)
    scores = torch.randn(1, 12)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, [5, 11]] = False
    changed = scores.clone()
    changed[0, [5, 11]] = 100.0  # what a padded instance holds must not leak into its neighbours
    first, second = smooth_over_grid(scores, (3, 4), 0.5, mask), smooth_over_grid(changed, (3, 4), 0.5, mask)
    assert torch.allclose(first[mask], second[mask])
    plain, smoothed = AttentionMIL(), AttentionMIL(grid=(16, 25), attention_smoothing=0.5)
    assert sum(p.numel() for p in smoothed.parameters()) == sum(p.numel() for p in plain.parameters()) == 491828


def test_smoothing_ranks_a_region_above_scattered_noise():
    """A tumour-like block of higher scores under noise: smoothing separates it better (rank AUC)."""
    from course_lib.amil.evaluate import _auc
    from course_lib.amil.model import smooth_over_grid

    rows, cols = 16, 25
    region = torch.zeros(rows, cols, dtype=torch.bool)
    region[4:11, 6:15] = True
    generator = torch.Generator().manual_seed(5)
    scores = (region.float() + 1.5 * torch.randn(rows, cols, generator=generator)).reshape(1, -1)
    smoothed = smooth_over_grid(scores, (rows, cols), alpha=0.5)
    raw_auc, smoothed_auc = (_auc(region.flatten().numpy(), s[0].numpy()) for s in (scores, smoothed))
    assert smoothed_auc > raw_auc + 0.05, (raw_auc, smoothed_auc)


def test_smoothing_needs_a_grid_that_fits_the_bag():
    with pytest.raises(ValueError, match="patch grid"):
        AttentionMIL(attention_smoothing=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        AttentionMIL(grid=(16, 25), attention_smoothing=1.0)
    model = AttentionMIL(grid=(16, 25), attention_smoothing=0.5)
    with pytest.raises(ValueError, match="16 x 25 = 400 patches"):
        model(torch.rand(399, 3, 28, 28))
