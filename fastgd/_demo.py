"""`fastgd demo` (what `make demo` runs): what training is, then why fastgd exists.

1. The seed walkthrough by hand: guess, measure the error, compute the gradient, step,
   repeat, on x = 1, 2, 3 and y = 2, 4, 6 (every number from fastgd's kernel).
2. The learning rate: too small crawls, too large diverges (and fastgd says so).
3. The pictures: the line moving towards the points (GIF) and the loss curves (PNG).
4. The same loop on a million rows and a hundred features, against the NumPy reference.
"""

from __future__ import annotations

import os
import textwrap
import time
import warnings

import numpy as np

import fastgd
from fastgd import _plots
from fastgd._timing import median_seconds
from fastgd._threads import effective_n_threads

SEED_X = np.array([[1.0], [2.0], [3.0]])
SEED_Y = np.array([2.0, 4.0, 6.0])
RATE = 0.1  # the seed articles' learning rate
TOO_SMALL, TOO_LARGE = 0.01, 0.3
ITERATIONS = 10
LABELS = {TOO_SMALL: " (too small)", TOO_LARGE: " (too large: diverges)"}


def seed_walkthrough(epochs: int = ITERATIONS, learning_rate: float = RATE):
    """The seed articles' loop by hand: forward pass, loss, gradient, update.

    Returns one row per iteration: (iteration, loss, dL/dw, dL/db, w, b), the loss and
    gradients at the parameters before the update and w, b after it.
    """
    w, b = np.zeros(1), 0.0
    rows = []
    for epoch in range(1, epochs + 1):
        loss, grad_w, grad_b = fastgd.loss_and_grad(SEED_X, SEED_Y, w, b)
        w, b = w - learning_rate * grad_w, b - learning_rate * grad_b
        rows.append((epoch, loss, float(grad_w[0]), grad_b, float(w[0]), b))
    return rows


def seed_frames(rows):
    """(iteration, w, b, loss at that w and b) from the start (iteration 0) to the end."""
    w, b = rows[-1][4], rows[-1][5]
    last = fastgd.loss_and_grad(SEED_X, SEED_Y, np.array([w]), b)[0]
    starts = [(0.0, 0.0)] + [(row[4], row[5]) for row in rows]
    losses = [row[1] for row in rows] + [last]
    return [(k, w, b, loss) for k, ((w, b), loss) in enumerate(zip(starts, losses, strict=True))]


def demo(out: str, rows: int, features: int) -> None:
    if os.path.exists(out) and not os.path.isdir(out):  # found now, not after three sections
        raise ValueError(f"--out {out!r} is a file; give a directory for the pictures")
    if rows < 100:
        raise ValueError(f"--rows must be at least 100, got {rows}")
    walkthrough = seed_walkthrough()
    _by_hand(walkthrough)
    curves = _learning_rates()
    _pictures(out, seed_frames(walkthrough), curves)
    _many_rows(rows, features)


def _by_hand(walkthrough) -> None:
    x, y = SEED_X[:, 0], SEED_Y
    print("fastgd demo\n\n1. Training is a loop: guess, measure the error, compute the "
          "gradient, step, repeat.\n")
    print("Data: x = 1, 2, 3 and y = 2, 4, 6 (the answer is y = 2x). Model: ŷ = w·x + b.")
    print(f"Guess w = b = 0, then step against the gradient with learning rate η = {RATE}.")
    w, b = 0.0, 0.0
    for iteration, loss, gw, gb, w_next, b_next in walkthrough[:2]:
        y_hat = w * x + b
        print(f"\nIteration {iteration}, from w = {w:.4f}, b = {b:.4f}")
        print("  forward pass    x    y    ŷ = w·x + b    error ŷ − y")
        for xi, yi, pi in zip(x, y, y_hat, strict=True):
            print(f"                {xi:>2.0f}   {yi:>2.0f}    {pi:>11.4f}    {pi - yi:>11.4f}")
        print(f"  loss            MSE = (1/n) Σ (ŷ − y)²   = {loss:.4f}")
        print(f"  gradient        ∂L/∂w = (2/n) Σ (ŷ − y)·x = {gw:.4f}")
        print(f"                  ∂L/∂b = (2/n) Σ (ŷ − y)   = {gb:.4f}")
        print(f"  update          w ← w − η·∂L/∂w = {w:.4f} − {RATE}·({gw:.4f}) = {w_next:.4f}")
        print(f"                  b ← b − η·∂L/∂b = {b:.4f} − {RATE}·({gb:.4f}) = {b_next:.4f}")
        w, b = w_next, b_next
    print(f"\n{len(walkthrough)} iterations (loss and gradients before each update; w and b "
          f"after it):\n")
    print(f"{'iteration':>9} {'loss':>10} {'dL/dw':>10} {'dL/db':>10} {'w':>9} {'b':>9}")
    for iteration, loss, gw, gb, w, b in walkthrough:
        print(f"{iteration:>9} {loss:>10.4f} {gw:>10.4f} {gb:>10.4f} {w:>9.4f} {b:>9.4f}")
    print("\nThe source article prints loss 0.34, w 1.681 and b 0.627 for iteration 2: "
          "arithmetic slips;\nthe correct values are loss 0.2963, w 1.6711, b 0.6933, as above.")
    print("The loss falls fast, then slowly: b and w trade off along a narrow valley of the "
          "loss.\n")


def _learning_rates() -> dict:
    """Section 2; returns the loss curves of the three learning rates, for the picture."""
    print("2. The learning rate is the size of each step.\n")
    curves = {}
    for rate in (TOO_SMALL, RATE, TOO_LARGE):
        model = fastgd.GDRegressor(optimizer="sgd", learning_rate=rate, standardize=False,
                                   max_epochs=100 if rate == TOO_LARGE else ITERATIONS,
                                   tol=None)
        try:
            model.fit(SEED_X, SEED_Y)
            error = None
        except fastgd.DivergenceError as caught:
            error = caught
        curves[f"η = {rate}" + LABELS.get(rate, "")] = model.history_["loss"]
        if rate == TOO_SMALL:
            print(f"  η = {rate} (too small): after {ITERATIONS} iterations the loss is still "
                  f"{model.history_['loss'][-1]:.4f}; slow progress.")
        elif rate == RATE:
            print(f"  η = {rate}: after {ITERATIONS} iterations the loss is "
                  f"{model.history_['loss'][-1]:.4f}.")
        else:
            print(f"  η = {rate} (too large): every step overshoots further than the last, "
                  f"and fastgd stops the run:")
            print(textwrap.fill(f"{type(error).__name__}: {error}", 88, initial_indent="    ",
                                subsequent_indent="    "))
    # For gradient descent on a quadratic loss, a step is stable below 2 / (the largest
    # curvature, the largest eigenvalue of the loss's Hessian).
    A = np.column_stack([SEED_X, np.ones(len(SEED_X))])
    curvature = np.linalg.eigvalsh(2 / len(A) * A.T @ A)[-1]
    auto = fastgd.GDRegressor(optimizer="sgd", standardize=False, max_epochs=1, tol=None)
    auto.fit(SEED_X, SEED_Y)
    print(f"  Gradient descent on this loss is stable below η = 2/λ = {2 / curvature:.3f}, "
          f"where λ = {curvature:.2f} is\n  the loss's largest curvature. fastgd's default, "
          f"learning_rate=\"auto\", works such a rate out\n  from the data "
          f"(here {auto.learning_rate_:.3f}).\n")
    return curves


def _pictures(out: str, frames, curves) -> None:
    print("3. The pictures.\n")
    if not _plots.available():
        print(f"  (No pictures: they need matplotlib. {_plots.INSTALL}, then run "
              f"fastgd demo again.)\n")
        return
    os.makedirs(out, exist_ok=True)
    animation = os.path.join(out, "seed_walkthrough.gif")
    _plots.seed_animation(animation, SEED_X[:, 0], SEED_Y, frames)
    losses = os.path.join(out, "loss_curves.png")
    _plots.loss_curves(losses, curves, title="Loss per iteration, three learning rates",
                       xlabel="iteration", ylabel="mean squared error")
    print(f"  {animation}: the line ŷ = w·x + b moving towards the points, "
          f"{len(frames)} frames")
    print(f"  {losses}: the loss per iteration for η = {TOO_SMALL}, {RATE} and {TOO_LARGE}\n")


def _many_rows(n: int, d: int) -> None:
    threads = effective_n_threads(None)
    print(f"4. The same loop on {n:,} rows × {d} features ({n * d * 8 / 1e6:,.0f} MB of "
          f"float64, {threads} thread{'s' if threads > 1 else ''}).\n")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    y = X @ rng.standard_normal(d) + 3.0 + rng.standard_normal(n)
    w = np.zeros(d)
    floor = median_seconds(lambda: X @ w, 5)
    print(f"  One X @ w, a single read of X (the memory floor): {floor * 1e3:.1f} ms\n")
    runs = {"full batch, GDRegressor's defaults": dict(),
            "mini-batch SGD, batch 32, one epoch": dict(
                optimizer="sgd", learning_rate=1e-3, batch_size=32, max_epochs=1, tol=None,
                random_state=0)}
    for title, params in runs.items():
        fits = {}
        for engine in ("cython", "numpy"):
            model = fastgd.GDRegressor(engine=engine, **params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a one-epoch run has not converged
                fits[engine] = (_seconds(lambda: model.fit(X, y)), model)  # noqa: B023
        (fast, model), (slow, reference) = fits["cython"], fits["numpy"]
        gap = np.max(np.abs(model.coef_ - reference.coef_))
        print(f"  {title}: {model.n_iter_} epoch{'s' if model.n_iter_ > 1 else ''}, "
              f"R² {model.score(X[:100_000], y[:100_000]):.4f}")
        print(f"    {'':<16} {'whole fit':>10} {'an epoch':>10} {'× X @ w':>8} "
              f"{'rows/s in an epoch':>19}")
        for name, seconds, fitted in (("fastgd", fast, model),
                                      ("NumPy reference", slow, reference)):
            epoch = float(np.median(fitted.history_["seconds"]))
            print(f"    {name:<16} {seconds:>8.3f} s {epoch * 1e3:>7.1f} ms {epoch / floor:>8.2f} "
                  f"{n / epoch / 1e6:>17.1f} M")
        print(f"    fastgd is {slow / fast:.1f} × faster; the two engines' coefficients differ "
              f"by at most {gap:.1e}\n")
    print("fastgd fuses the forward pass, loss, gradient and update so that each epoch reads X "
          "once.\nNext: fastgd train --help (train on a CSV file), README.md.")


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
