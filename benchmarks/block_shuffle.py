"""How close a block shuffle's training curve comes to a full permutation's (issue 21).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/block_shuffle.py \\
        [--rows 4000000] [--features 20] [--epochs 5]

In memory, on X of --rows x --features float32, with the block shuffle scaled to the
geometry of the 29.8 GiB file of benchmarks/larger_than_memory.py (blocks of 1/8,192 of
the rows and windows of 64 blocks, 1/128 of them; there 8,192 rows of 400 bytes a
block): SGD (batch 256, a constant rate) trained with shuffle="rows" (a full
permutation), "blocks", and False (in file order), each epoch's mean training loss
(history_["loss"]) and the held-out loss after the last epoch. Two row orders of the
same data: random, and sorted by the target (a file written in the order of what it
predicts, the case where a shuffle matters most), for a regression (squared loss) and a
classification (log loss).
"""

from __future__ import annotations

import argparse

import numpy as np

from fastgd import GDClassifier, GDRegressor, _shuffling


def problem(n, d, task, seed):
    """Rows drawn by `seed` from one model (the same for every seed)."""
    w = np.random.default_rng(0).standard_normal(d).astype(np.float32) / np.sqrt(d)
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((n, d), dtype=np.float32)
    z = X @ w + 0.5 * rng.standard_normal(n).astype(np.float32)
    y = z if task == "regression" else (z > 0).astype(np.float32)
    return X, y


def held_out_loss(model, X, y, task) -> float:
    if task == "regression":
        return float(np.mean((model.predict(X) - y) ** 2))
    p = np.clip(model.predict_proba(X)[:, 1], 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    n, d = args.rows, args.features
    row_bytes = d * 4
    _shuffling.BLOCK_BYTES = max(1, n // 8192) * row_bytes
    _shuffling.WINDOW_BYTES = 64 * _shuffling.BLOCK_BYTES
    block_rows, window_blocks = _shuffling.block_shape(row_bytes)
    print(f"X: {n:,} x {d} float32; blocks of {block_rows:,} rows, windows of "
          f"{window_blocks} blocks ({block_rows * window_blocks:,} rows); SGD, batch 256, "
          f"{args.epochs} epochs\n")
    print("| task | rows in the file | shuffle | training loss, epoch by epoch | "
          "held-out loss |")
    print("|---|---|---|---|---|")
    for task in ("regression", "classification"):
        X, y = problem(n, d, task, 0)
        X_test, y_test = problem(200_000, d, task, 1)
        for order_name in ("random", "sorted by y"):
            if order_name == "sorted by y":
                order = np.argsort(y, kind="stable")
                X, y = X[order], y[order]
            for shuffle in ("rows", "blocks", False):
                Estimator = GDRegressor if task == "regression" else GDClassifier
                model = Estimator(optimizer="sgd", learning_rate=0.01, batch_size=256,
                                  max_epochs=args.epochs, tol=None, shuffle=shuffle,
                                  random_state=0).fit(X, y)
                curve = ", ".join(f"{value:.5f}" for value in model.history_["loss"])
                print(f"| {task} | {order_name} | {shuffle} | {curve} | "
                      f"{held_out_loss(model, X_test, y_test, task):.5f} |", flush=True)


if __name__ == "__main__":
    main()
