"""Time the vectorised WIDER FACE evaluation against the per-image loop reference.

Both score the same random predictions on a synthetic ground truth of the WIDER FACE val size
(61 events, 3226 images, ~40k faces with a long-tailed count per image), held in memory. The
reference (``ffcore.evaluation.wider_ap_loop``) is a line-by-line loop transliteration of the official
MATLAB code, the same one the tests compare with, so it is also what the common Python port costs.

    .venv/bin/python -m benchmarks.eval_speed [--images 3226] [--dets-per-face 1.5] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ffcore.data.wider_mat import GroundTruth
from ffcore.evaluation.wider_ap import evaluate
from ffcore.evaluation.wider_ap_loop import reference_evaluate


def synthetic_case(
    n_images: int, dets_per_face: float, seed: int
) -> tuple[GroundTruth, list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    n_events = min(61, n_images)
    event_of = np.sort(rng.integers(0, n_events, n_images))
    events = [f"{e}--Event" for e in range(n_events)]
    images: list[list[str]] = [[] for _ in events]
    boxes: list[list[np.ndarray]] = [[] for _ in events]
    preds: list[list[np.ndarray]] = [[] for _ in events]
    keep: dict[str, list[list[np.ndarray]]] = {
        s: [[] for _ in events] for s in ("easy", "medium", "hard")
    }
    for i, e in enumerate(event_of):
        m = min(int(rng.geometric(1 / 12.4)), 700)  # mean ~12 faces, a long tail
        wh = np.exp(rng.normal(3.0, 1.0, (m, 1))).clip(2, 600) * [1.0, 1.25]
        faces = np.hstack([rng.uniform(0, 1024, (m, 2)), wh]).round()
        height = faces[:, 3]
        for subset, min_h in (("easy", 50), ("medium", 30), ("hard", 10)):
            keep[subset][e].append(np.flatnonzero(height >= min_h) + 1)
        n_hit = rng.binomial(int(round(dets_per_face * m)), 0.8)
        src = faces[rng.integers(0, m, n_hit)]
        hits = src + rng.normal(0, 0.12, src.shape) * np.repeat(src[:, 2:], 2, axis=1)
        noise = np.hstack(
            [rng.uniform(0, 1024, (m // 2 + 3, 2)), rng.uniform(4, 80, (m // 2 + 3, 2))]
        )
        scores = np.concatenate([rng.beta(5, 2, n_hit), rng.beta(2, 5, len(noise))]).round(4)
        dets = np.hstack([np.vstack([hits, noise]), scores[:, None]])
        images[e].append(f"{e}_img_{i}")
        boxes[e].append(faces)
        preds[e].append(dets[rng.permutation(len(dets))])
    return GroundTruth(events, images, boxes, keep), preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3226)
    parser.add_argument("--dets-per-face", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gt, preds = synthetic_case(args.images, args.dets_per_face, args.seed)
    n_dets = sum(len(p) for ev in preds for p in ev)
    print(f"{gt.num_images} images, {gt.num_faces} faces, {n_dets} detections")

    t0 = time.perf_counter()
    fast = evaluate(preds, gt)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_evaluate(preds, gt)
    t_ref = time.perf_counter() - t0

    print(f"{'subset':<8} {'vectorised AP':>15} {'loop AP':>15}  identical")
    for s in fast.ap:
        print(f"{s:<8} {fast.ap[s]:>15.10f} {ref[s][0]:>15.10f}  {fast.ap[s] == ref[s][0]}")
    identical = all(fast.ap[s] == ref[s][0] for s in fast.ap) and all(
        np.array_equal(fast.pr[s][0], ref[s][1], equal_nan=True)
        and np.array_equal(fast.pr[s][1], ref[s][2], equal_nan=True)
        for s in fast.ap
    )
    print(
        f"vectorised: {t_fast:.2f} s   loop reference: {t_ref:.2f} s   ratio: {t_ref / t_fast:.0f}x"
    )
    print(f"AP and PR curves identical: {identical}")
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
