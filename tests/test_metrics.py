"""Metrics against hand-computed values and independent formulations."""

import numpy as np
import pytest

from ups_toolkit.metrics import (
    confusion_matrix, detection_map_pku, detection_map_voc, early_prediction_accuracy, euler_error,
    horizon_frame_indices, knn1_accuracy, mean_class_accuracy, mpjpe, mpjpe_at_horizons, mpjve, n_mpjpe,
    observed_frame_count, p_mpjpe, per_action_mean, topk_accuracy,
)
from ups_toolkit.metrics.pose import procrustes_align


def random_rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_topk_with_ties_goes_to_lower_index():
    scores = np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [0.3, 0.3, 0.3]])
    labels = np.array([1, 2, 0])
    # sample 0: tie between 0 and 1 -> 0 ranks first, so top-1 misses; sample 2: three-way tie -> class 0 first
    acc = topk_accuracy(scores, labels, ks=(1, 2))
    assert acc[1] == pytest.approx(200 / 3) and acc[2] == pytest.approx(100.0)


def test_mean_class_accuracy_and_confusion():
    labels = np.array([0, 0, 0, 0, 1, 2])
    preds = np.array([0, 0, 0, 1, 1, 0])
    assert confusion_matrix(preds, labels, 3).tolist() == [[3, 1, 0], [0, 1, 0], [1, 0, 0]]
    # per-class recall 0.75, 1, 0 -> mean 58.33 (overall accuracy would be 66.7)
    assert mean_class_accuracy(preds, labels, 3) == pytest.approx(175 / 3)


def test_observed_frames_and_early_prediction():
    assert observed_frame_count(50, 0.2) == 10
    assert observed_frame_count(7, 0.1) == 1 and observed_frame_count(7, 0.1, "floor_min3") == 3
    assert observed_frame_count(2, 0.1, "floor_min3") == 2  # never more than the sequence
    assert observed_frame_count(30, 0.3) == 9  # 0.3 * 30 is 9.000000000000002 in floating point
    with pytest.raises(ValueError):
        observed_frame_count(10, 0)
    labels = np.array([0, 1])
    result = early_prediction_accuracy({0.2: np.array([[1, 0], [1, 0]]), 0.4: np.eye(2)}, labels)
    assert result["per_ratio"] == {0.2: 50.0, 0.4: 100.0} and result["mean"] == 75.0


def test_mpjpe_hand_computed():
    target = np.zeros((1, 2, 3))
    pred = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])
    assert mpjpe(pred, target) == pytest.approx(3.0)


def umeyama_aligned(pred, target):
    """Independent formulation: Umeyama's least-squares similarity via the cross-covariance matrix."""
    mu_p, mu_t = pred.mean(0), target.mean(0)
    p, t = pred - mu_p, target - mu_t
    cov = t.T @ p / len(p)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2, 2] = -1
    rotation = u @ s @ vt
    scale = np.trace(np.diag(d) @ s) / (p**2).sum(axis=1).mean()
    return scale * p @ rotation.T + mu_t


def test_p_mpjpe_matches_umeyama_and_removes_similarity():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(8, 17, 3))
    noisy = target + 0.05 * rng.normal(size=target.shape)
    transformed = np.stack([1.7 * n @ random_rotation(rng) + rng.normal(size=3) for n in noisy])
    aligned = procrustes_align(transformed, target)
    independent = np.stack([umeyama_aligned(p, t) for p, t in zip(transformed, target)])
    np.testing.assert_allclose(aligned, independent, atol=1e-9)
    assert p_mpjpe(transformed, target) == pytest.approx(mpjpe(aligned, target))
    exact = np.stack([2.0 * t @ random_rotation(rng) + 3.0 for t in target])
    assert p_mpjpe(exact, target) < 1e-9


def test_p_mpjpe_does_not_allow_reflections():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(4, 17, 3))
    mirrored = target * np.array([-1.0, 1.0, 1.0])
    assert p_mpjpe(mirrored, target) > 0.1
    np.testing.assert_allclose(procrustes_align(mirrored, target), np.stack(
        [umeyama_aligned(m, t) for m, t in zip(mirrored, target)]), atol=1e-9)


def test_n_mpjpe_and_mpjve():
    rng = np.random.default_rng(2)
    target = rng.normal(size=(5, 17, 3))
    assert n_mpjpe(0.5 * target, target) < 1e-12
    assert n_mpjpe(0.5 * target, target) < mpjpe(0.5 * target, target)
    sequence = rng.normal(size=(10, 17, 3))
    shifted = sequence + 1.0  # constant offset: no velocity error
    assert mpjve(shifted, sequence) < 1e-12 and mpjpe(shifted, sequence) == pytest.approx(np.sqrt(3))


def test_per_action_mean_strips_take_numbers():
    per_action, mean = per_action_mean([1.0, 3.0, 10.0], ["Walking 1", "Walking 2", "Eating"])
    assert per_action == {"Eating": 10.0, "Walking": 2.0} and mean == 6.0


def test_motion_horizons():
    assert horizon_frame_indices(25) == [1, 3, 7, 9]
    target = np.zeros((2, 10, 3, 3))
    pred = np.zeros_like(target)
    pred[:, :, :, 0] = np.arange(10)[None, :, None]  # error k at future frame k
    assert mpjpe_at_horizons(pred, target, fps=25) == {80: 1.0, 160: 3.0, 320: 7.0, 400: 9.0}
    with pytest.raises(ValueError, match="do not reach"):
        mpjpe_at_horizons(pred[:, :5], target[:, :5], fps=25)


def test_euler_error_zeroes_global_dims_and_uses_prediction_std():
    k, d = 10, 9
    target = np.zeros((1, k, d))
    pred = np.zeros((1, k, d))
    pred[0, :, 0:6] = 5.0  # global translation/rotation: ignored
    pred[0, :, 6] = np.linspace(0, 0.9, k)  # varies: kept, error = value
    target[0, :, 7] = 1.0  # constant in the prediction (std 0): ignored even though it differs
    errors = euler_error(pred, target)
    assert errors == {80: pytest.approx(0.1), 160: pytest.approx(0.3), 320: pytest.approx(0.7), 400: pytest.approx(0.9)}


def test_knn1():
    train = np.array([[1.0, 0.0], [0.0, 1.0]])
    test = np.array([[10.0, 1.0], [0.1, 5.0], [1.0, 0.9]])
    assert knn1_accuracy(train, [0, 1], test, [0, 1, 1]) == pytest.approx(200 / 3)


def test_pku_official_map_hand_built():
    truths = [("v", 1, 0, 10), ("v", 1, 20, 30)]
    # one correct confident proposal, one false positive with lower confidence
    proposals = [("v", 1, 0, 10, 0.9), ("v", 1, 50, 60, 0.5)]
    # Walked from the least confident: dropping the FP does not update the precision (only matched proposals do),
    # so AP = 0.5 (precision of the full set) * 0.5 (recall step) = 0.25 -- the official script's value.
    result = detection_map_pku(proposals, truths, threshold=0.5)
    assert result["mAP_a"] == pytest.approx(25.0) and result["mAP_v"] == pytest.approx(25.0)
    # both found, the FP now more confident than one TP
    proposals = [("v", 1, 0, 10, 0.9), ("v", 1, 20, 31, 0.4), ("v", 1, 50, 60, 0.5)]
    # ascending: TP(0.4) FP(0.5) TP(0.9); P=2/3,R=1 -> drop TP(0.4): P=1/2, R=1/2, p*=2/3, AP+=2/3*1/2
    # -> drop FP -> drop TP(0.9): P=0, R=0, p*=2/3, AP += 2/3 * 1/2 => 2/3
    assert detection_map_pku(proposals, truths)["mAP_a"] == pytest.approx(200 / 3)
    # overlap below the threshold: (10 - 5) / (15 - 0) = 1/3 < 0.5
    assert detection_map_pku([("v", 1, 5, 15, 1.0)], [("v", 1, 0, 10)])["mAP_a"] == 0.0
    # other video or label never matches
    assert detection_map_pku([("w", 1, 0, 10, 1.0)], [("v", 1, 0, 10)])["mAP_a"] == 0.0


def test_pku_map_over_classes_and_videos():
    truths = [("a", 1, 0, 10), ("b", 2, 0, 10)]
    proposals = [("a", 1, 0, 10, 0.9)]  # class 2 / video b missed
    result = detection_map_pku(proposals, truths)
    assert result["mAP_a"] == pytest.approx(50.0) and result["mAP_v"] == pytest.approx(50.0)
    # averaging over all 51 official classes divides by 51
    official = detection_map_pku(proposals, truths, classes=range(1, 52))
    assert official["mAP_a"] == pytest.approx(100.0 / 51)


def test_voc_map_hand_built():
    truths = [("v", 1, 0, 10), ("v", 1, 20, 30)]
    proposals = [("v", 1, 0, 10, 0.9), ("v", 1, 50, 60, 0.5)]
    # precision 1 at recall 0.5, recall never reaches 1 -> AP 0.5
    assert detection_map_voc(proposals, truths)["mAP"] == pytest.approx(50.0)
    # a duplicate detection of the same segment is a false positive
    duplicate = [("v", 1, 0, 10, 0.9), ("v", 1, 0, 10, 0.8), ("v", 1, 20, 30, 0.7)]
    # TP, FP, TP: precision envelope 1 up to R 0.5, then 2/3 at R 1 -> 0.5 + 0.5 * 2/3
    assert detection_map_voc(duplicate, truths)["mAP"] == pytest.approx(100 * (0.5 + 1 / 3))


def test_evaluate_modules_load_offline():
    evaluate = pytest.importorskip("evaluate")
    from ups_toolkit.metrics.evaluate_modules import module_path

    top_k = evaluate.load(module_path("ups_top_k_accuracy"))
    result = top_k.compute(predictions=[[0.1, 0.9], [0.8, 0.2], [0.6, 0.4]], references=[1, 0, 1], ks=(1,))
    assert result["top1"] == pytest.approx(200 / 3) and result["mean_class"] == pytest.approx(75.0)

    pose = evaluate.load(module_path("ups_pose_error"))
    rng = np.random.default_rng(3)
    target = rng.normal(size=(4, 17, 3)).astype(np.float32)
    result = pose.compute(predictions=list(target * 2), references=list(target))
    assert result["n_mpjpe_mm"] < 1e-3 and result["mpjpe_mm"] == pytest.approx(1000 * mpjpe(target * 2, target), rel=1e-5)

    detection = evaluate.load(module_path("ups_detection_map"))
    result = detection.compute(predictions=[[[1, 0, 10, 0.9], [1, 50, 60, 0.5]]], references=[[[1, 0, 10], [1, 20, 30]]])
    assert result["mAP_a"] == pytest.approx(25.0)
