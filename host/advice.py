"""Suggestions for convert_report: advice that the per-layer error data supports (no
TensorFlow, no nncase: plain numbers in, sentences out)."""

# A tensor whose full range is this many times wider than its 0.1..99.9 percentile range is
# "dominated by outliers": min/max (no_clip) calibration then spends most of its 256 uint8
# levels on a few values.
OUTLIER_RATIO = 3.0
# Below this final-output cos, more calibration images are worth suggesting.
GOOD_COS = 0.999
# A single layer losing more cos than this stands out.
LAYER_DROP = 0.002


def suggestions(layer_report, calibrate_method, calibration_images):
    """Advice the per-layer data supports, one sentence each."""
    if not layer_report or not layer_report["layers"]:
        return []
    out = []
    layers = layer_report["layers"]
    final_cos = min(row["cos"] for row in layers if row["output"])
    worst_row = min(layers, key=lambda row: row["cos"])
    if worst_row["outlier_ratio"] >= OUTLIER_RATIO and calibrate_method == "no_clip":
        out.append("%s (%s, cos %.5f) has a float range %.3g..%.3g but 99.8 %% of its values "
                   "lie in %.3g..%.3g: outliers set the uint8 scale; try --calibrate-method l2 "
                   "or kld_m2, which clip them" % (worst_row["node"], worst_row["op"],
                                                   worst_row["cos"], worst_row["float_min"],
                                                   worst_row["float_max"], worst_row["p001"],
                                                   worst_row["p999"]))
    if final_cos < GOOD_COS and calibration_images < 50:
        out.append("final output cos %.5f with %d calibration image(s): more calibration images "
                   "(50-200 from the deployment scene) give ranges closer to what the board "
                   "sees" % (final_cos, calibration_images))
    drops = [(layers[i - 1]["cos"] - layers[i]["cos"], layers[i]) for i in range(1, len(layers))]
    if drops:
        drop, row = max(drops, key=lambda d: d[0])
        if drop > LAYER_DROP:
            out.append("the largest single-layer loss is at %s (%s): cos falls by %.4f there; "
                       "a wide activation range or many channels at that layer are the usual "
                       "cause" % (row["node"], row["op"], drop))
    return out
