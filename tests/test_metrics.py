import numpy as np
import pytest

from host import metrics


def test_tensor_metrics_identical_and_scaled():
    r = np.array([1.0, -2.0, 3.0, 0.5])
    m = metrics.tensor_metrics(r, r)
    assert m["cos"] == pytest.approx(1.0) and m["l2r"] == 0 and m["max_abs"] == 0
    m = metrics.tensor_metrics(r * 1.1, r)
    assert m["cos"] == pytest.approx(1.0)
    assert m["l2r"] == pytest.approx(0.1)
    assert m["max_abs"] == pytest.approx(0.3)
    assert m["mae"] == pytest.approx(0.1 * np.mean(np.abs(r)))


def test_tensor_metrics_opposite_and_shape_mismatch():
    r = np.array([1.0, 2.0])
    assert metrics.tensor_metrics(-r, r)["cos"] == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        metrics.tensor_metrics([1.0], r)


def test_match_is_one_to_one_and_uses_best_assignment():
    true = [(0.0, 0.0, 0.4, 0.4), (0.2, 0.0, 0.6, 0.4)]
    # Greedy matching of pred 0 to its best true box (true 0) would leave pred 1 unmatched;
    # the Hungarian assignment matches both.
    pred = [(0.08, 0.0, 0.48, 0.4, 0.9), (0.0, 0.0, 0.38, 0.4, 0.8)]
    m = metrics.match_detections(pred, true, iou=0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 0, 0)
    assert sorted((p, t) for p, t, _ in m["pairs"]) == [(0, 1), (1, 0)]


def test_match_counts_and_classes():
    true = [(0.0, 0.0, 0.2, 0.2, 1.0, 0), (0.5, 0.5, 0.9, 0.9, 1.0, 1)]
    pred = [(0.0, 0.0, 0.2, 0.2, 0.9, 0), (0.5, 0.5, 0.9, 0.9, 0.9, 0), (0.6, 0.0, 0.7, 0.1, 0.5, 0)]
    m = metrics.match_detections(pred, true)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 2, 1)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(0.5)


def test_empty_cases_and_pooling():
    assert metrics.match_detections([], [])["f1"] == 1.0
    assert metrics.match_detections([(0, 0, 1, 1)], [])["f1"] == 0.0
    assert metrics.match_detections([], [(0, 0, 1, 1)])["recall"] == 0.0
    pooled = metrics.pool_matches([metrics.counts_to_prf(3, 1, 0), metrics.counts_to_prf(1, 0, 1)])
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (4, 1, 1)
    assert pooled["f1"] == pytest.approx(0.8)
