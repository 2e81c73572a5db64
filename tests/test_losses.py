import math

import pytest
import torch
import torch.nn.functional as F

from clipbert_emo.models.losses import (
    class_weights_from_counts,
    focal_loss,
    multitask_loss,
    regression_loss,
    single_label_loss,
)

# Logits [0, ln 3] give softmax [1/4, 3/4].
LN3 = math.log(3.0)


def test_class_weights_hand_example():
    # inverse [1, 1/3, 0, 1/2]; mean over present classes = (1 + 1/3 + 1/2) / 3 = 11/18
    w = class_weights_from_counts([1, 3, 0, 2])
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor([18 / 11, 6 / 11, 0.0, 9 / 11]))
    assert w[w > 0].mean().item() == pytest.approx(1.0)


def test_class_weights_balanced_is_ones_and_errors():
    torch.testing.assert_close(class_weights_from_counts([5, 5, 5]), torch.ones(3))
    with pytest.raises(ValueError, match="count 0"):
        class_weights_from_counts([0, 0])
    with pytest.raises(ValueError, match=">= 0"):
        class_weights_from_counts([3, -1])


def test_focal_hand_example():
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]])
    target = torch.tensor([1, 0])
    # target 1: p_t = 3/4 -> (1/4)^2 * ln(4/3); target 0: p_t = 1/4 -> (3/4)^2 * ln 4
    expected = ((1 / 16) * math.log(4 / 3) + (9 / 16) * math.log(4)) / 2
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(expected, rel=1e-6)
    # per-class alpha [2, 1]: divide by the sum of the weights, like weighted CE
    w = torch.tensor([2.0, 1.0])
    expected_w = (2 * (9 / 16) * math.log(4) + 1 * (1 / 16) * math.log(4 / 3)) / 3
    assert focal_loss(logits, target, gamma=2.0, weight=w).item() == pytest.approx(expected_w, rel=1e-6)
    # gamma = 1: (1/4) ln(4/3) and (3/4) ln 4
    expected_1 = ((1 / 4) * math.log(4 / 3) + (3 / 4) * math.log(4)) / 2
    assert focal_loss(logits, target, gamma=1.0).item() == pytest.approx(expected_1, rel=1e-6)


def test_focal_gamma0_equals_cross_entropy_exactly():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 4, generator=g) * 3
    target = torch.tensor([0, 3, 2, -100, 1, 1, 3])
    w = torch.tensor([0.5, 2.0, 1.0, 0.25])
    assert torch.equal(focal_loss(logits, target, 0.0, ignore_index=-100),
                       F.cross_entropy(logits, target, ignore_index=-100))
    assert torch.equal(focal_loss(logits, target, 0.0, weight=w),
                       F.cross_entropy(logits, target, weight=w))
    assert torch.equal(single_label_loss(logits, target, "ce"), F.cross_entropy(logits, target))
    assert torch.equal(single_label_loss(logits, target, "weighted_ce", class_weights=w),
                       F.cross_entropy(logits, target, weight=w))


def test_focal_is_below_ce_and_downweights_easy_samples():
    logits = torch.tensor([[5.0, 0.0], [0.0, 0.1]])
    target = torch.tensor([0, 0])
    per_ce = F.cross_entropy(logits, target, reduction="none")
    per_fl = torch.stack([focal_loss(logits[i:i + 1], target[i:i + 1], 2.0) for i in range(2)])
    assert (per_fl < per_ce).all()
    # the easy sample (p_t ~ 0.993) is shrunk far more than the hard one
    assert (per_fl[0] / per_ce[0]) < 1e-3 < (per_fl[1] / per_ce[1])


def test_focal_ignore_index_and_all_ignored():
    logits = torch.tensor([[0.0, LN3], [9.0, -9.0]], requires_grad=True)
    target = torch.tensor([1, -100])
    # only the first sample counts: (1/4)^2 * ln(4/3)
    assert focal_loss(logits, target, 2.0).item() == pytest.approx((1 / 16) * math.log(4 / 3), rel=1e-6)
    out = focal_loss(logits, torch.tensor([-100, -100]), 2.0)
    assert out.item() == 0.0
    out.backward()  # still attached to the graph, gradient 0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_focal_gradients_flow_are_finite_and_match_autograd_check():
    logits = torch.tensor([[30.0, -30.0, 0.0], [0.2, 0.1, -0.3]], requires_grad=True)
    target = torch.tensor([0, 2])
    for gamma in (0.0, 0.5, 2.0):
        logits.grad = None
        focal_loss(logits, target, gamma).backward()
        assert torch.isfinite(logits.grad).all()
        assert logits.grad[1].abs().sum() > 0
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2, 1])
    assert torch.autograd.gradcheck(lambda z: focal_loss(z, t, 2.0), (x,))


def test_focal_low_precision_input_is_computed_in_float32():
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]]).to(torch.bfloat16)
    out = focal_loss(logits, torch.tensor([1, 0]), 2.0)
    assert out.dtype == torch.float32


def test_single_label_loss_errors():
    logits, target = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="needs class_weights"):
        single_label_loss(logits, target, "weighted_ce")
    with pytest.raises(ValueError, match="no class_weights"):
        single_label_loss(logits, target, "ce", class_weights=torch.ones(3))
    with pytest.raises(ValueError, match="unknown loss kind"):
        single_label_loss(logits, target, "hinge")
    with pytest.raises(ValueError, match="class_weights must be"):
        single_label_loss(logits, target, "weighted_ce", class_weights=torch.ones(2))
    with pytest.raises(ValueError, match="gamma"):
        single_label_loss(logits, target, "focal", gamma=-1.0)


def test_single_label_focal_uses_gamma():
    logits = torch.tensor([[0.0, LN3]])
    assert single_label_loss(logits, torch.tensor([1]), "focal", gamma=2.0).item() == pytest.approx(
        (1 / 16) * math.log(4 / 3), rel=1e-6)


def test_multitask_loss_hand_example():
    # B=2, H=2, K=2. Head 0 columns 0..1, head 1 columns 2..3.
    # head 0: sample 0 logits [0, ln3] target 1 -> ln(4/3); sample 1 logits [0, 0] target 0 -> ln 2
    #   mean = (ln(4/3) + ln 2) / 2
    # head 1: only sample 1 labelled, logits [ln3, 0] target 0 -> ln(4/3)
    # result = mean over the two heads
    logits = torch.tensor([[0.0, LN3, 5.0, -5.0], [0.0, 0.0, LN3, 0.0]], requires_grad=True)
    target = torch.tensor([[1, -1], [0, 0]])
    head0 = (math.log(4 / 3) + math.log(2)) / 2
    head1 = math.log(4 / 3)
    out = multitask_loss(logits, target, num_heads=2)
    assert out.item() == pytest.approx((head0 + head1) / 2, rel=1e-6)
    out.backward()
    # the unlabelled (sample 0, head 1) logits get no gradient
    assert torch.equal(logits.grad[0, 2:], torch.zeros(2))
    assert logits.grad[1].abs().sum() > 0


def test_multitask_loss_skips_heads_without_labels_and_weights():
    logits = torch.tensor([[0.0, LN3, 1.0, 2.0]])
    # head 1 unlabelled in the whole batch: only head 0 counts (not averaged with a 0)
    out = multitask_loss(logits, torch.tensor([[1, -1]]), num_heads=2)
    assert out.item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    # nothing labelled -> 0
    assert multitask_loss(logits, torch.tensor([[-1, -1]]), num_heads=2).item() == 0.0
    # weighted CE per head equals F.cross_entropy with that head's row of weights
    g = torch.Generator().manual_seed(1)
    lg = torch.randn(5, 6, generator=g)
    tg = torch.tensor([[0, 2], [1, -1], [2, 0], [-1, 1], [0, 0]])
    cw = torch.tensor([[1.0, 2.0, 0.5], [0.3, 1.0, 3.0]])
    expected = (F.cross_entropy(lg[:, 0:3], tg[:, 0], weight=cw[0], ignore_index=-1)
                + F.cross_entropy(lg[:, 3:6], tg[:, 1], weight=cw[1], ignore_index=-1)) / 2
    torch.testing.assert_close(multitask_loss(lg, tg, 2, "weighted_ce", class_weights=cw), expected)
    # focal with gamma 0 is plain CE per head
    torch.testing.assert_close(multitask_loss(lg, tg, 2, "focal", gamma=0.0), multitask_loss(lg, tg, 2, "ce"))


def test_multitask_loss_shape_errors():
    with pytest.raises(ValueError, match="multiple"):
        multitask_loss(torch.zeros(2, 5), torch.zeros(2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="target"):
        multitask_loss(torch.zeros(2, 4), torch.zeros(2, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="class_weights"):
        multitask_loss(torch.zeros(2, 4), torch.zeros(2, 2, dtype=torch.long), 2, "weighted_ce", torch.ones(2))


def test_regression_loss_l1():
    pred = torch.tensor([[0.5], [-1.0], [2.0]], requires_grad=True)
    target = torch.tensor([1.0, -1.5, 0.0])
    # |0.5-1| + |-1+1.5| + |2-0| = 0.5 + 0.5 + 2 = 3 -> 1
    out = regression_loss(pred, target)
    assert out.item() == pytest.approx(1.0)
    out.backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[-1 / 3], [1 / 3], [1 / 3]]))
    assert regression_loss(pred.detach().squeeze(1), target).item() == pytest.approx(1.0)
    assert regression_loss(pred.detach().half(), target).dtype == torch.float32
    with pytest.raises(ValueError):
        regression_loss(torch.zeros(3, 2), target)
