"""deqa.losses against hand-computed values, gradient checks (float64) and edge cases."""

import math

import pytest
import torch

from deqa.losses import (
    DeQALossWeights,
    answer_ce_loss,
    deqa_loss,
    fidelity_loss,
    kl_level_loss,
    level_log_probs,
    level_mean_std,
    preference_probability,
)

LN2 = math.log(2.0)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# A 6-token vocabulary whose level tokens are ids 1, 3, 5 (K = 3).
LEVEL_IDS = torch.tensor([1, 3, 5])
# level logits 0, ln 2, 0 -> closed softmax 1/4, 1/2, 1/4; the other 3 tokens have logit 0,
# so the full softmax is 1/7, 2/7, 1/7 on the levels.
LOGITS = torch.tensor([[0.0, 0.0, 0.0, LN2, 0.0, 0.0]], dtype=torch.float64)


def test_level_log_probs_closed_and_full():
    closed = level_log_probs(LOGITS, LEVEL_IDS, softmax="closed").exp()
    full = level_log_probs(LOGITS, LEVEL_IDS, softmax="full").exp()
    torch.testing.assert_close(closed, torch.tensor([[0.25, 0.5, 0.25]], dtype=torch.float64))
    torch.testing.assert_close(full, torch.tensor([[1 / 7, 2 / 7, 1 / 7]], dtype=torch.float64))
    with pytest.raises(ValueError, match="'closed' or 'full'"):
        level_log_probs(LOGITS, LEVEL_IDS, softmax="levels")


def test_kl_level_loss_hand_values():
    target = torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)
    closed = kl_level_loss(LOGITS, target, LEVEL_IDS, softmax="closed")
    # 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.5) + 0 (0 log 0 = 0)
    assert closed.item() == pytest.approx(0.5 * LN2, abs=1e-12)
    full = kl_level_loss(LOGITS, target, LEVEL_IDS, softmax="full")
    assert full.item() == pytest.approx(0.5 * math.log(3.5) + 0.5 * math.log(1.75), abs=1e-12)


def test_kl_is_zero_at_the_target_and_reductions():
    logits = torch.zeros(2, 6, dtype=torch.float64)
    logits[1, 3] = LN2
    target = level_log_probs(logits, LEVEL_IDS).exp()
    assert kl_level_loss(logits, target, LEVEL_IDS).item() == pytest.approx(0.0, abs=1e-12)
    per = kl_level_loss(logits, torch.tensor([[1.0, 0, 0]] * 2), LEVEL_IDS, reduction="none")
    # closed probabilities of level 0: row 0 = 1/3, row 1 = 1/4
    torch.testing.assert_close(per, torch.tensor([math.log(3), math.log(4)], dtype=torch.float64))
    total = kl_level_loss(logits, torch.tensor([[1.0, 0, 0]] * 2), LEVEL_IDS, reduction="sum")
    assert total.item() == pytest.approx(math.log(12))


def test_kl_bad_target_shape_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"expected \(1, 3\)"):
        kl_level_loss(LOGITS, torch.ones(1, 5) / 5, LEVEL_IDS)


def test_kl_one_hot_target_has_finite_gradient():
    logits = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], dtype=torch.float64)
    for softmax in ("closed", "full"):
        (grad,) = torch.autograd.grad(kl_level_loss(logits, target, LEVEL_IDS, softmax=softmax), logits)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("softmax", ["closed", "full"])
def test_kl_gradcheck(softmax):
    torch.manual_seed(0)
    logits = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    target = torch.softmax(torch.randn(3, 3, dtype=torch.float64), -1)
    assert torch.autograd.gradcheck(
        lambda x: kl_level_loss(x, target, LEVEL_IDS, softmax=softmax), (logits,)
    )


def test_level_mean_std_hand_values():
    probs = torch.tensor(
        [[0, 0, 1.0, 0, 0], [0.5, 0, 0, 0, 0.5], [0.2, 0.2, 0.2, 0.2, 0.2]], dtype=torch.float64
    )
    mean, std = level_mean_std(probs)
    torch.testing.assert_close(mean, torch.tensor([3.0, 3.0, 3.0], dtype=torch.float64))
    # var: 0 (std = sqrt(eps)), (1 + 25) / 2 - 9 = 4, (1 + 4 + 9 + 16 + 25) / 5 - 9 = 2
    torch.testing.assert_close(std, torch.tensor([1e-6, 2.0, math.sqrt(2.0)], dtype=torch.float64))
    mean, _ = level_mean_std(probs[:1], values=torch.tensor([5.0, 4, 3, 2, 1]))
    assert mean.item() == 3.0


def test_level_mean_std_gradient_finite_for_one_hot():
    probs = torch.tensor([[0, 0, 1.0, 0, 0]], dtype=torch.float64, requires_grad=True)
    _, std = level_mean_std(probs)
    (grad,) = torch.autograd.grad(std.sum(), probs)
    assert torch.isfinite(grad).all()


def test_preference_probability_hand_values():
    one = torch.tensor([1.0], dtype=torch.float64)
    p = preference_probability(torch.tensor([3.0]), one, torch.tensor([2.0]), one, eps=0.0)
    assert p.item() == pytest.approx(_phi(1 / math.sqrt(2)), abs=1e-7)
    p = preference_probability(torch.tensor([2.0]), 0.6 * one, torch.tensor([3.5]), 0.8 * one, eps=0.0)
    assert p.item() == pytest.approx(_phi(-1.5), abs=1e-7)  # sqrt(0.36 + 0.64) = 1
    # both stds 0: equal means -> 0.5, different means saturate without NaN
    zero = torch.zeros(2, dtype=torch.float64)
    p = preference_probability(torch.tensor([3.0, 3.1]), zero, torch.tensor([3.0, 3.0]), zero)
    torch.testing.assert_close(p, torch.tensor([0.5, 1.0], dtype=torch.float64))


def test_preference_is_invariant_to_affine_rescaling_of_mos():
    mos_a, mos_b = torch.tensor([60.0, 20.0]), torch.tensor([45.0, 70.0])
    std_a, std_b = torch.tensor([10.0, 5.0]), torch.tensor([12.0, 8.0])
    raw = preference_probability(mos_a, std_a, mos_b, std_b, eps=0.0)
    scaled = preference_probability(
        1 + 4 * mos_a / 100, 4 * std_a / 100, 1 + 4 * mos_b / 100, 4 * std_b / 100, eps=0.0
    )
    torch.testing.assert_close(raw, scaled)


def test_preference_gradcheck():
    torch.manual_seed(1)
    args = [torch.rand(4, dtype=torch.float64, requires_grad=True) + 0.5 for _ in range(4)]
    assert torch.autograd.gradcheck(preference_probability, tuple(args))


def test_fidelity_loss_hand_values():
    pred = torch.tensor([0.5, 0.8, 1.0, 0.0, 0.3], dtype=torch.float64)
    gt = torch.tensor([0.5, 0.2, 0.0, 0.0, 0.3], dtype=torch.float64)
    loss = fidelity_loss(pred, gt, eps=0.0, reduction="none")
    # 1 - 2 sqrt(0.25); 1 - sqrt(.16) - sqrt(.16); 1 - 0 - 0; 1 - 0 - 1; 1 - .3 - .7
    torch.testing.assert_close(loss, torch.tensor([0.0, 0.2, 1.0, 0.0, 0.0], dtype=torch.float64))
    assert fidelity_loss(pred, gt, eps=0.0).item() == pytest.approx(0.24)
    assert fidelity_loss(pred, gt, eps=0.0, reduction="sum").item() == pytest.approx(1.2)
    with pytest.raises(ValueError, match="reduction"):
        fidelity_loss(pred, gt, reduction="max")


def test_fidelity_gradients_finite_at_zero_and_one():
    pred = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    gt = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    (grad,) = torch.autograd.grad(fidelity_loss(pred, gt), pred)
    assert torch.isfinite(grad).all()
    # wrong-way predictions are pushed towards the target
    assert grad[2] < 0 and grad[3] > 0


def test_fidelity_gradcheck():
    torch.manual_seed(2)
    pred = (torch.rand(5, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    gt = torch.rand(5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: fidelity_loss(p, gt), (pred,))


def _ce_case():
    # B=1, T=4, V=3; answer tokens at t=2 (label 2) and t=3 (label 1, the level token).
    logits = torch.zeros(1, 4, 3, dtype=torch.float64)
    logits[0, 1, 2] = LN2  # predicts t=2: p(2) = 2/4
    logits[0, 2, 1] = math.log(3.0)  # predicts t=3: p(1) = 3/5
    labels = torch.tensor([[-100, -100, 2, 1]])
    return logits, labels, torch.tensor([3])


def test_answer_ce_hand_values():
    logits, labels, level_pos = _ce_case()
    excluded = answer_ce_loss(logits, labels, level_pos)
    assert excluded.item() == pytest.approx(LN2)
    included = answer_ce_loss(logits, labels, level_pos, include_level_token=True)
    assert included.item() == pytest.approx((LN2 - math.log(0.6)) / 2)
    # the input labels are not modified
    assert labels.tolist() == [[-100, -100, 2, 1]]
    with pytest.raises(ValueError, match="level_positions"):
        answer_ce_loss(logits, labels)


def test_answer_ce_without_tokens_is_zero_with_graph():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    labels = torch.full((2, 3), -100)
    labels[:, 2] = 1
    loss = answer_ce_loss(logits, labels, torch.tensor([2, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_answer_ce_gradcheck():
    torch.manual_seed(3)
    logits = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[-100, -100, 1, 3, 0], [-100, 2, 0, 1, -100]])
    level = torch.tensor([3, 2])
    assert torch.autograd.gradcheck(lambda x: answer_ce_loss(x, labels, level), (logits,))


def _batch(seed=4):
    torch.manual_seed(seed)
    B, T, V = 4, 5, 7
    logits = torch.randn(B, T, V, dtype=torch.float64, requires_grad=True)
    labels = torch.full((B, T), -100)
    labels[:, 3] = torch.tensor([1, 2, 3, 4])  # level token at t=3
    labels[:, 4] = 6  # a "." after the level word
    level_ids = torch.tensor([1, 2, 3, 4, 5])
    target = torch.softmax(torch.randn(B, 5, dtype=torch.float64), -1)
    mos = torch.tensor([1.5, 4.0, 3.0, 2.2], dtype=torch.float64)
    std = torch.tensor([0.5, 0.7, 0.4, 0.6], dtype=torch.float64)
    pairs = dict(pair_a=torch.tensor([0, 2]), pair_b=torch.tensor([1, 3]))
    return logits, labels, torch.full((B,), 3), level_ids, target, mos, std, pairs


def test_deqa_loss_combines_the_terms_with_official_defaults():
    logits, labels, level_pos, level_ids, target, mos, std, pairs = _batch()
    out = deqa_loss(logits, labels, level_pos, level_ids, target, mos=mos, mos_std=std, **pairs)
    w = DeQALossWeights()
    assert (w.ce, w.kl, w.fidelity, w.kl_softmax, w.fidelity_std) == (0.05, 0.05, 1.0, "full", 1.0)
    level_logits = logits[:, 2]
    kl = kl_level_loss(level_logits, target, level_ids, softmax="full")
    ce = answer_ce_loss(logits, labels, level_pos)
    probs = torch.softmax(level_logits[:, level_ids], -1)
    mu = probs @ torch.arange(1.0, 6.0, dtype=torch.float64)
    one = torch.ones(2, dtype=torch.float64)
    pred = preference_probability(mu[[0, 2]], one, mu[[1, 3]], one)
    gt = preference_probability(mos[[0, 2]], std[[0, 2]], mos[[1, 3]], std[[1, 3]])
    fid = fidelity_loss(pred, gt)
    torch.testing.assert_close(out.kl, kl)
    torch.testing.assert_close(out.ce, ce)
    torch.testing.assert_close(out.fidelity, fid)
    torch.testing.assert_close(out.loss, 0.05 * (ce + kl) + fid)
    torch.testing.assert_close(out.level_probs, probs)
    # CE counts only the "." token (the level token is left to the KL term)
    only_dot = answer_ce_loss(logits, labels, level_pos, include_level_token=False)
    assert only_dot.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits[:, 3], labels[:, 4]).item()
    )


def test_deqa_loss_predicted_std_and_closed_softmax_options():
    logits, labels, level_pos, level_ids, target, mos, std, pairs = _batch(5)
    w = DeQALossWeights(kl_softmax="closed", fidelity_std=None, ce=0.0, kl=2.0, fidelity=0.5)
    out = deqa_loss(logits, labels, level_pos, level_ids, target, mos=mos, mos_std=std, weights=w, **pairs)
    probs = torch.softmax(logits[:, 2][:, level_ids], -1)
    mu, sd = level_mean_std(probs)
    pred = preference_probability(mu[[0, 2]], sd[[0, 2]], mu[[1, 3]], sd[[1, 3]])
    gt = preference_probability(mos[[0, 2]], std[[0, 2]], mos[[1, 3]], std[[1, 3]])
    torch.testing.assert_close(out.fidelity, fidelity_loss(pred, gt))
    assert out.ce.item() == 0.0
    kl = kl_level_loss(logits[:, 2], target, level_ids, softmax="closed")
    torch.testing.assert_close(out.loss, 2.0 * kl + 0.5 * fidelity_loss(pred, gt))


def test_deqa_loss_gradcheck():
    logits, labels, level_pos, level_ids, target, mos, std, pairs = _batch(6)
    for w in (DeQALossWeights(), DeQALossWeights(fidelity_std=None, kl_softmax="closed")):
        assert torch.autograd.gradcheck(
            lambda x, w=w: deqa_loss(
                x, labels, level_pos, level_ids, target, mos=mos, mos_std=std, weights=w, **pairs
            ).loss,
            (logits,),
            fast_mode=True,
        )


def test_deqa_loss_without_pairs_and_errors():
    logits, labels, level_pos, level_ids, target, mos, std, _ = _batch(7)
    out = deqa_loss(logits, labels, level_pos, level_ids, target)
    assert out.fidelity.item() == 0.0
    torch.testing.assert_close(out.loss, 0.05 * (out.ce + out.kl))
    with pytest.raises(ValueError, match="mos, mos_std"):
        deqa_loss(logits, labels, level_pos, level_ids, target, pair_a=torch.tensor([0]), pair_b=torch.tensor([1]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ce=-1.0), "'ce'"),
        (dict(fidelity=float("nan")), "'fidelity'"),
        (dict(kl_softmax="vocab"), "kl_softmax"),
        (dict(fidelity_std=0.0), "fidelity_std"),
    ],
)
def test_loss_weights_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeQALossWeights(**kwargs)
