from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from clipbert_emo.data.samplers import ClassBalancedSampler

SKEW = [0] * 90 + [1] * 9 + [2] * 1


def test_same_seed_and_epoch_same_order():
    a = ClassBalancedSampler(SKEW, seed=7)
    b = ClassBalancedSampler(SKEW, seed=7)
    a.set_position(3)
    b.set_position(3)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating twice does not advance any state
    assert len(a) == 100 and len(list(a)) == 100


def test_order_does_not_depend_on_global_rng():
    s = ClassBalancedSampler(SKEW, seed=7)
    torch.manual_seed(0)
    first = list(s)
    torch.manual_seed(123)
    torch.rand(10)
    assert list(s) == first


def test_epochs_and_seeds_differ():
    s = ClassBalancedSampler(SKEW, seed=7)
    orders = []
    for e in range(3):
        s.set_position(e)
        orders.append(list(s))
    assert orders[0] != orders[1] != orders[2] != orders[0]
    assert list(ClassBalancedSampler(SKEW, seed=8)) != orders[0]


def test_skip_drops_exactly_the_first_items():
    s = ClassBalancedSampler(SKEW, seed=1, num_samples=50)
    s.set_position(2)
    full = list(s)
    s.set_position(2, skip=17)
    assert list(s) == full[17:]
    assert len(s) == 50  # like EpochShuffleSampler, the length is the epoch's, not the remainder
    s.set_position(2, skip=50)
    assert list(s) == []


def test_resume_through_a_dataloader_sees_the_same_batches():
    data = list(range(len(SKEW)))
    s = ClassBalancedSampler(SKEW, seed=5)
    s.set_position(1)
    full = [b.tolist() for b in DataLoader(data, batch_size=8, sampler=s)]
    s.set_position(1, skip=3 * 8)
    resumed = [b.tolist() for b in DataLoader(data, batch_size=8, sampler=s)]
    assert resumed == full[3:]


def test_class_frequencies_are_uniform_on_a_90_9_1_skew():
    # 30000 draws, 3 classes: each count ~ Binomial(30000, 1/3), sd ~ 82. A 5% (500) band is
    # > 6 sd wide, and the seed is fixed, so this cannot flake.
    s = ClassBalancedSampler(SKEW, seed=0, num_samples=30000)
    counts = Counter(SKEW[i] for i in s)
    for c in (0, 1, 2):
        assert abs(counts[c] - 10000) < 500, counts
    # and within the majority class, its samples are used evenly (each ~ 10000/90 = 111 times)
    per_index = Counter(i for i in s if SKEW[i] == 0)
    assert len(per_index) == 90


def test_weights_are_inverse_class_counts():
    s = ClassBalancedSampler([0, 0, 0, 1], seed=0)
    torch.testing.assert_close(s.weights, torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0], dtype=torch.float64))
    assert s.class_counts == {0: 3, 1: 1}


def test_class_with_zero_count_is_never_drawn_and_others_share():
    # labels use classes 0 and 2 of a 3-class problem; class 1 has no sample
    labels = [0] * 20 + [2] * 5
    s = ClassBalancedSampler(labels, seed=3, num_samples=10000)
    counts = Counter(labels[i] for i in s)
    assert set(counts) == {0, 2}
    assert abs(counts[0] - 5000) < 400 and abs(counts[2] - 5000) < 400


def test_unannotated_placeholder_is_its_own_group():
    labels = [-1] * 10 + [0] * 10 + [1] * 80
    s = ClassBalancedSampler(labels, seed=0, num_samples=30000)
    counts = Counter(labels[i] for i in s)
    for c in (-1, 0, 1):
        assert abs(counts[c] - 10000) < 500, counts


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        ClassBalancedSampler([], seed=0)
    with pytest.raises(ValueError, match="num_samples"):
        ClassBalancedSampler([0, 1], seed=0, num_samples=0)
