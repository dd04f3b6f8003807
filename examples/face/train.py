"""Train the example face detector (TF1, YOLOv2 loss) on the synthetic face dataset.

Follows the BatchNorm-safe recipe of docs (background.md):
- ``training_control = tf.placeholder_with_default(True, [], name='training_control')`` is
  the network's ``is_training``; validation runs feed it False (what the K210 will run);
- the Adam ``minimize`` runs under a control dependency on ``tf.GraphKeys.UPDATE_OPS``, so
  the BN moving statistics are really trained;
- ``tf.train.Saver(tf.global_variables())`` saves the moving statistics too.

Steps: regenerate ``calib_images/`` and ``examples/face/eval/`` (make_data.py); generate the
training set (seed TRAIN_SEED) and the validation split (VAL_SEED) in memory; k-means (IoU
distance) anchors on the training boxes; train with Adam on 2 threads under a wall-time
budget; pick the decoder threshold that maximises F1 on the validation split (shared
decoder ``device/decoders.py``); write ``checkpoint/`` and ``convert.json`` atomically; run
``evaluate.py`` on the held-out eval set.

    .venv/bin/python examples/face/train.py            # `make train-example`
"""
import argparse
import math
import multiprocessing
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
for _p in (HERE, os.path.dirname(HERE), REPO):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402

import dataset  # noqa: E402
import kit  # noqa: E402
import make_data  # noqa: E402
import model  # noqa: E402
from device import decoders  # noqa: E402
from host import atomic, metrics, pixels  # noqa: E402
from host.tf_infer import tf  # noqa: E402  (quiet TF 1.15 import, shared with host/)

GH, GW = model.GRID_HEIGHT, model.GRID_WIDTH
NUM_ANCHORS, NUM_CLASSES = 5, 1
MAX_BOXES = 4
CHECKPOINT_DIR = os.path.join(HERE, "checkpoint")
CONVERT_JSON = os.path.join(HERE, "convert.json")
NMS = 0.3

# Loss weights (YOLOv2 style).
LAMBDA_COORD = 5.0
LAMBDA_OBJ = 5.0
LAMBDA_NOOBJ = 1.0
IGNORE_IOU = 0.6


# ---------------------------------------------------------------- data

def _make_chunk(args):
    seed, start, stop = args
    out = np.empty((stop - start, dataset.HEIGHT, dataset.WIDTH, 3), np.uint8)
    labels = []
    for k, i in enumerate(range(start, stop)):
        out[k], boxes, _ = dataset.make_image(seed, i)
        labels.append(boxes)
    return out, labels


def generate_parallel(n, seed, workers=2, chunk=100):
    """dataset.generate(n, seed), drawn by ``workers`` processes (same result)."""
    jobs = [(seed, s, min(n, s + chunk)) for s in range(0, n, chunk)]
    if workers <= 1:
        parts = [_make_chunk(j) for j in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_make_chunk, jobs)
    images = np.concatenate([p[0] for p in parts])
    labels = [b for p in parts for b in p[1]]
    return images, labels


# ---------------------------------------------------------------- anchors

def _shape_iou(wh, centroids):
    inter = np.minimum(wh[:, None, 0], centroids[None, :, 0]) * \
        np.minimum(wh[:, None, 1], centroids[None, :, 1])
    area = wh[:, 0:1] * wh[:, 1:2]
    carea = (centroids[:, 0] * centroids[:, 1])[None, :]
    return inter / (area + carea - inter)


def kmeans_anchors(labels, k=NUM_ANCHORS, seed=0, restarts=10):
    """k-means with 1 - IoU distance on box (w, h) in grid cells; flat MaixPy layout
    (w0, h0, w1, h1, ...), sorted by area, rounded to 3 decimals; and the mean best IoU."""
    wh = np.array([[(b[2] - b[0]) * GW, (b[3] - b[1]) * GH] for boxes in labels for b in boxes],
                  np.float64)
    rng = np.random.RandomState(seed)
    best, best_fit = None, -1.0
    for _ in range(restarts):
        cents = wh[rng.choice(len(wh), k, replace=False)].copy()
        for _it in range(300):
            assign = np.argmax(_shape_iou(wh, cents), axis=1)
            new = np.array([wh[assign == j].mean(axis=0) if np.any(assign == j) else cents[j]
                            for j in range(k)])
            if np.allclose(new, cents):
                break
            cents = new
        fit = float(np.mean(np.max(_shape_iou(wh, cents), axis=1)))
        if fit > best_fit:
            best, best_fit = cents, fit
    best = best[np.argsort(best[:, 0] * best[:, 1])]
    return [round(float(v), 3) for v in best.reshape(-1)], best_fit


# ---------------------------------------------------------------- targets and loss

def build_targets(labels, anchors, grid=(GH, GW), partial=None):
    """Per-image YOLOv2 targets [N, gh, gw, A, 8] (tx, ty, tw, th, obj, class, coord weight,
    don't care) and padded true boxes [N, MAX_BOXES, 4] (fractions) for the ignore mask.

    ``partial[n]``: boxes of faces cut by a crop border; they are neither positives nor
    negatives (the cell of their visible centre is "don't care", and predictions overlapping
    them are ignored through ``gt``)."""
    gh, gw = grid
    anc = np.asarray(anchors, np.float64).reshape(-1, 2)
    y = np.zeros((len(labels), gh, gw, len(anc), 8), np.float32)
    gt = np.zeros((len(labels), 2 * MAX_BOXES, 4), np.float32)
    for n, boxes in enumerate(labels):
        cut = partial[n] if partial is not None else []
        for j, box in enumerate((list(boxes) + list(cut))[:2 * MAX_BOXES]):
            gt[n, j] = box
        for (x0, y0, x1, y1) in cut:
            cx = (max(x0, 0.0) + min(x1, 1.0)) / 2 * gw
            cy = (max(y0, 0.0) + min(y1, 1.0)) / 2 * gh
            y[n, min(int(cy), gh - 1), min(int(cx), gw - 1), :, 7] = 1.0
        for (x0, y0, x1, y1) in boxes:
            cx, cy = (x0 + x1) / 2 * gw, (y0 + y1) / 2 * gh
            w, h = (x1 - x0) * gw, (y1 - y0) * gh
            col, row = min(int(cx), gw - 1), min(int(cy), gh - 1)
            a = int(np.argmax(_shape_iou(np.array([[w, h]]), anc)[0]))
            y[n, row, col, a] = (cx - col, cy - row, math.log(w / anc[a, 0]),
                                 math.log(h / anc[a, 1]), 1.0, 0.0,
                                 2.0 - (x1 - x0) * (y1 - y0), 0.0)
    return y, gt


def yolo_loss(output, y_true, gt_boxes, anchors):
    """YOLOv2 loss, summed over cells/anchors, averaged over the batch (any grid size)."""
    dims = tf.shape(output)
    gh, gw = dims[1], dims[2]
    pred = tf.reshape(output, [-1, gh, gw, NUM_ANCHORS, 5 + NUM_CLASSES])
    anc = tf.constant(np.asarray(anchors, np.float32).reshape(1, 1, 1, NUM_ANCHORS, 2))
    mask = y_true[..., 4]
    weight = y_true[..., 6]
    pxy = tf.sigmoid(pred[..., 0:2])
    twh = pred[..., 2:4]
    # Centre error relative to the box size (in cells): what IoU cares about, so small
    # faces (half a cell) are localised as precisely as large ones.
    box_cells = tf.exp(y_true[..., 2:4]) * anc
    xy_err = (pxy - y_true[..., 0:2]) / tf.maximum(box_cells, 0.25)
    xy_loss = tf.reduce_sum(mask * weight * tf.reduce_sum(tf.square(xy_err), -1))
    wh_loss = tf.reduce_sum(mask * weight * tf.reduce_sum(tf.square(twh - y_true[..., 2:4]), -1))

    # Ignore mask: a predicted box overlapping a true box by > IGNORE_IOU is not a negative.
    gwf, ghf = tf.cast(gw, tf.float32), tf.cast(gh, tf.float32)
    cols = tf.reshape(tf.range(gwf, dtype=tf.float32), [1, 1, -1, 1])
    rows = tf.reshape(tf.range(ghf, dtype=tf.float32), [1, -1, 1, 1])
    bx = (cols + pxy[..., 0]) / gwf
    by = (rows + pxy[..., 1]) / ghf
    bwh = tf.exp(tf.clip_by_value(twh, -10.0, 5.0)) * anc / tf.stack([gwf, ghf])
    pb = tf.stack([bx - bwh[..., 0] / 2, by - bwh[..., 1] / 2,
                   bx + bwh[..., 0] / 2, by + bwh[..., 1] / 2], -1)
    pb = tf.stop_gradient(pb)[:, :, :, :, None, :]            # [N,GH,GW,A,1,4]
    tb = gt_boxes[:, None, None, None, :, :]                  # [N,1,1,1,M,4]
    iw = tf.maximum(tf.minimum(pb[..., 2], tb[..., 2]) - tf.maximum(pb[..., 0], tb[..., 0]), 0.0)
    ih = tf.maximum(tf.minimum(pb[..., 3], tb[..., 3]) - tf.maximum(pb[..., 1], tb[..., 1]), 0.0)
    inter = iw * ih
    union = ((pb[..., 2] - pb[..., 0]) * (pb[..., 3] - pb[..., 1])
             + (tb[..., 2] - tb[..., 0]) * (tb[..., 3] - tb[..., 1]) - inter)
    best_iou = tf.reduce_max(inter / tf.maximum(union, 1e-9), axis=-1)
    noobj = (1.0 - mask) * (1.0 - y_true[..., 7]) * tf.cast(best_iou < IGNORE_IOU, tf.float32)

    obj_ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=mask, logits=pred[..., 4])
    obj_loss = LAMBDA_OBJ * tf.reduce_sum(mask * obj_ce)
    noobj_loss = LAMBDA_NOOBJ * tf.reduce_sum(noobj * obj_ce)
    class_onehot = tf.one_hot(tf.cast(y_true[..., 5], tf.int32), NUM_CLASSES)
    cls_loss = tf.reduce_sum(mask * tf.nn.softmax_cross_entropy_with_logits_v2(
        labels=class_onehot, logits=pred[..., 5:]))
    batch = tf.cast(tf.shape(output)[0], tf.float32)
    parts = {"xy": xy_loss / batch, "wh": wh_loss / batch, "obj": obj_loss / batch,
             "noobj": noobj_loss / batch, "cls": cls_loss / batch}
    total = LAMBDA_COORD * (parts["xy"] + parts["wh"]) + parts["obj"] + parts["noobj"] \
        + parts["cls"]
    return total, parts


# ---------------------------------------------------------------- augmentation

def _crop_offset(boxes, full_h, full_w, ch, cw, rng, tries=8):
    """Random crop offset; of ``tries`` candidates the one holding the most whole faces
    (cut faces count against it), so crops keep enough positives."""
    best, best_score = (0, 0), None
    for _ in range(tries if boxes else 1):
        oy = rng.randint(0, full_h - ch + 1)
        ox = rng.randint(0, full_w - cw + 1)
        score = 0.0
        for x0, y0, x1, y1 in boxes:
            px0, py0, px1, py1 = x0 * full_w - ox, y0 * full_h - oy, x1 * full_w - ox, \
                y1 * full_h - oy
            if px0 >= 0 and py0 >= 0 and px1 <= cw and py1 <= ch:
                score += 1.0
            elif px1 > 0 and py1 > 0 and px0 < cw and py0 < ch:
                score -= 0.5
        if best_score is None or score > best_score:
            best, best_score = (oy, ox), score
    return best


def augment(images, labels, rng, crop=None):
    """Horizontal flips, (half the time) the board's RGB565 round trip, and optionally a
    random crop of size ``crop`` (h, w). Returns (images, boxes, partial boxes)."""
    n = len(images)
    ch, cw = crop or images.shape[1:3]
    out = np.empty((n, ch, cw, 3), np.uint8)
    boxes_out, partial_out = [], []
    for i in range(n):
        img = images[i]
        boxes = [list(b) for b in labels[i]]
        if rng.rand() < 0.5:
            img = img[:, ::-1]
            boxes = [[1.0 - b[2], b[1], 1.0 - b[0], b[3]] for b in boxes]
        full_h, full_w = img.shape[:2]
        oy, ox = _crop_offset(boxes, full_h, full_w, ch, cw, rng)
        img = img[oy:oy + ch, ox:ox + cw]
        if rng.rand() < 0.5:
            img = pixels.through_rgb565(img)
        out[i] = img
        inside, partial = [], []
        for x0, y0, x1, y1 in boxes:
            b = [(x0 * full_w - ox) / cw, (y0 * full_h - oy) / ch,
                 (x1 * full_w - ox) / cw, (y1 * full_h - oy) / ch]
            eps = 1e-6
            if b[0] >= -eps and b[1] >= -eps and b[2] <= 1 + eps and b[3] <= 1 + eps:
                inside.append([min(max(v, 0.0), 1.0) for v in b])
            elif b[2] > 0 and b[3] > 0 and b[0] < 1 and b[1] < 1:
                partial.append(b)
        boxes_out.append(inside)
        partial_out.append(partial)
    return out, boxes_out, partial_out


# ---------------------------------------------------------------- evaluation helpers

def predict(sess, out, x, images, feed=None, batch=20):
    res = []
    for s in range(0, len(images), batch):
        fd = {x: images[s:s + batch].astype(np.float32) / 255.0}
        fd.update(feed or {})
        res.append(sess.run(out, fd))
    return np.concatenate(res)


def decode_nhwc(out_hwc, anchors, threshold, nms=NMS):
    """One image's NHWC output [7,10,30] -> boxes via the shared decoder (CHW flat)."""
    chw = np.transpose(out_hwc, (2, 0, 1))
    params = {"anchors": anchors, "classes": NUM_CLASSES, "threshold": threshold, "nms": nms}
    return decoders.decode("yolo2", chw.reshape(-1).tolist(), chw.shape, params)


def score(outputs, labels, anchors, threshold):
    matches = [metrics.match_detections(decode_nhwc(o, anchors, threshold), t, iou=0.5)
               for o, t in zip(outputs, labels)]
    return metrics.pool_matches(matches)


def choose_threshold(outputs, labels, anchors):
    """The threshold (0.05..0.95, step 0.05) with the best validation F1 (ties: higher)."""
    table = []
    for k in range(1, 20):
        thr = round(0.05 * k, 2)
        table.append((thr, score(outputs, labels, anchors, thr)))
    best = max(table, key=lambda t: (round(t[1]["f1"], 6), t[0]))
    return best, table


# ---------------------------------------------------------------- saving

def write_convert_json(anchors, threshold):
    atomic.write_json(CONVERT_JSON, {
        "checkpoint": "checkpoint/model.ckpt",
        "model_fn": "model.py:face_yolo",
        "input_node": model.INPUT_NODE,
        "output_node": model.OUTPUT_NODE,
        "input_size": "%dx%d" % (model.INPUT_HEIGHT, model.INPUT_WIDTH),
        "input_scale": "0-1",
        "decoder": "yolo2",
        "anchors": anchors,
        "labels": list(dataset.LABELS),
        "threshold": threshold,
        "nms": NMS,
    })


# ---------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description="Train the example face detector.")
    p.add_argument("--train-images", type=int, default=3000)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--steps", type=int, default=1400, help="planned steps (cosine schedule)")
    p.add_argument("--crop", default="128x192",
                   help="HxW random crops for the first part of training (faster steps)")
    p.add_argument("--full-fraction", type=float, default=0.25,
                   help="last fraction of the schedule trained on full 224x320 images")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--minutes", type=float, default=9.0,
                   help="wall-time budget of the training loop; stops early when reached")
    p.add_argument("--validate-every", type=int, default=300)
    p.add_argument("--no-evaluate", action="store_true", help="skip evaluate.py at the end")
    args = p.parse_args(argv)
    t_start = time.time()

    make_data.main()
    images, labels = generate_parallel(args.train_images, dataset.TRAIN_SEED)
    val_images, val_labels = generate_parallel(args.val_images, dataset.VAL_SEED)
    print("data: %d train images (%d faces), %d validation images, %.0f s"
          % (len(images), sum(map(len, labels)), len(val_images), time.time() - t_start))

    anchors, fit = kmeans_anchors(labels)
    print("anchors (grid units, w,h pairs): %s  mean best IoU %.3f" % (anchors, fit))

    tf.reset_default_graph()
    tf.set_random_seed(0)
    rng = np.random.RandomState(0)
    # Float batches in [0, 1] of any size (crops or full images).
    x = tf.placeholder(tf.float32, [None, None, None, 3], name="batch_image")
    y_true = tf.placeholder(tf.float32, [None, None, None, NUM_ANCHORS, 8], name="y_true")
    gt_boxes = tf.placeholder(tf.float32, [None, 2 * MAX_BOXES, 4], name="gt_boxes")
    lr = tf.placeholder(tf.float32, [], name="learning_rate")
    training_control = tf.placeholder_with_default(True, shape=[], name="training_control")
    output = model.face_yolo(x, is_training=training_control,
                             num_anchors=NUM_ANCHORS, num_classes=NUM_CLASSES)
    total_loss, parts = yolo_loss(output, y_true, gt_boxes, anchors)
    global_step = tf.train.get_or_create_global_step()
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        train_op = tf.train.AdamOptimizer(lr).minimize(total_loss, global_step)
    saver = tf.train.Saver(tf.global_variables())

    config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
    budget = args.minutes * 60.0
    warmup = 50
    with tf.Session(config=config) as sess:
        sess.run(tf.global_variables_initializer())
        t_train = time.time()
        order = rng.permutation(len(images))
        pos = 0
        step = 0
        full_started = None
        crop = tuple(int(v) for v in args.crop.lower().split("x"))
        while step < args.steps:
            frac = max(step / float(args.steps), (time.time() - t_train) / budget)
            if frac >= 1.0:
                print("time budget reached at step %d" % step)
                break
            rate = args.lr * min(1.0, (step + 1) / float(warmup)) \
                * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
            if pos + args.batch > len(order):
                order, pos = rng.permutation(len(images)), 0
            idx = np.sort(order[pos:pos + args.batch])
            pos += args.batch
            full = frac >= 1.0 - args.full_fraction
            if full and not full_started:
                full_started = step
                print("step %d: full %dx%d images from now on" % (step, model.INPUT_HEIGHT,
                                                                 model.INPUT_WIDTH))
            bx, bl, bp = augment(images[idx], [labels[i] for i in idx], rng,
                                 None if full else crop)
            yt, gb = build_targets(bl, anchors, (bx.shape[1] // 32, bx.shape[2] // 32), bp)
            _, loss, pv = sess.run([train_op, total_loss, parts], {
                x: bx.astype(np.float32) / 255.0, y_true: yt, gt_boxes: gb, lr: rate})
            step += 1
            if step % 25 == 0 or step == 1:
                print("step %4d  %5.0f s  lr %.5f  loss %7.3f  (%s)" % (
                    step, time.time() - t_train, rate, loss,
                    " ".join("%s %.3f" % (k, pv[k]) for k in sorted(pv))), flush=True)
            if step % args.validate_every == 0:
                # What the board will run: BatchNorm with the moving statistics.
                outs = predict(sess, output, x, val_images, {training_control: False})
                r = score(outs, val_labels, anchors, 0.5)
                print("  validation (training_control=False, thr 0.5): P %.3f R %.3f F1 %.3f"
                      % (r["precision"], r["recall"], r["f1"]), flush=True)
        train_seconds = time.time() - t_train

        outs = predict(sess, output, x, val_images, {training_control: False})
        (threshold, best), table = choose_threshold(outs, val_labels, anchors)
        for thr, r in table:
            print("  val thr %.2f: P %.3f R %.3f F1 %.3f" % (thr, r["precision"], r["recall"],
                                                          r["f1"]))
        print("chosen threshold %.2f (validation F1 %.3f)" % (threshold, best["f1"]))
        mm = [v for v in tf.global_variables() if "moving_mean" in v.name]
        print("moving_mean |mean|: %s" % " ".join(
            "%.3f" % float(np.mean(np.abs(sess.run(v)))) for v in mm))
        size = kit.save_checkpoint(sess, saver, CHECKPOINT_DIR, meta_graph=True)
    write_convert_json(anchors, threshold)
    print("checkpoint %s: %d bytes; convert.json written" % (CHECKPOINT_DIR, size))
    print("training loop %.0f s (%d steps), total so far %.0f s"
          % (train_seconds, step, time.time() - t_start))

    if not args.no_evaluate:
        import evaluate
        evaluate.main([], extra={"train_seconds": round(train_seconds, 1),
                                 "train_steps": step,
                                 "crop_steps": full_started if full_started is not None
                                 else step,
                                 "batch": args.batch,
                                 "train_images": len(images),
                                 "total_seconds": round(time.time() - t_start, 1),
                                 "validation_f1": round(best["f1"], 4)})
    print("done in %.0f s" % (time.time() - t_start))


if __name__ == "__main__":
    main()
