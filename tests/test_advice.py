"""host/advice.py: which suggestions the per-layer numbers support (fast, no TF/nncase)."""
from host import advice


def _row(node, cos, lo=-1.0, hi=1.0, p001=-1.0, p999=1.0, output=False):
    return {"node": node, "op": "Conv2D", "cos": cos, "float_min": lo, "float_max": hi,
            "p001": p001, "p999": p999, "output": output,
            "outlier_ratio": (hi - lo) / (p999 - p001)}


def test_a_clean_model_gets_no_suggestion():
    layers = {"layers": [_row("a", 0.9999), _row("b", 0.9998), _row("out", 0.9997, output=True)]}
    assert advice.suggestions(layers, "no_clip", 30) == []
    assert advice.suggestions(None, "no_clip", 30) == []


def test_outliers_in_the_worst_layer_suggest_a_clipping_method():
    layers = {"layers": [_row("a", 0.9999), _row("b", 0.990, -50, 60, -2, 3),
                         _row("out", 0.995, output=True)]}
    text = advice.suggestions(layers, "no_clip", 100)
    assert any("b (Conv2D" in t and "--calibrate-method l2" in t for t in text), text
    assert any("largest single-layer loss is at b" in t for t in text), text
    # already clipping: no advice to clip
    assert not any("--calibrate-method" in t for t in advice.suggestions(layers, "l2", 100))


def test_a_poor_output_with_few_images_suggests_more_calibration_images():
    layers = {"layers": [_row("a", 0.9995), _row("out", 0.9985, output=True)]}
    assert any("more calibration images" in t for t in advice.suggestions(layers, "l2", 20))
    assert not any("more calibration" in t for t in advice.suggestions(layers, "l2", 200))
