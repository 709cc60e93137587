"""Checkpoints in format version 1 (the optimizer state as two vectors m and v), the files
beside this script: written by fastgd at commit d75ed39, before the state was kept by name,
with `python make.py DIR` run on that build. tests/test_checkpoint.py resumes them."""

import os
import sys
import warnings

import numpy as np

from fastgd import GDClassifier, GDRegressor

warnings.simplefilter("ignore")
out = sys.argv[1]
rng = np.random.default_rng(7)
X = rng.standard_normal((240, 5)) * [1, 2, 3, 0.5, 4] + [0, 1, -1, 2, 0]
y = X @ [1.0, -2.0, 0.5, 3.0, 0.0] + 0.1 * rng.standard_normal(240)
Y2 = np.column_stack([y, 0.5 * y - 1])
labels = np.digitize(y, np.quantile(y, [0.33, 0.66]))
np.savez(os.path.join(out, "data.npz"), X=X, y=y, Y2=Y2, labels=labels)

def stop_after(n):
    return lambda info: info["epoch"] >= n

cases = {
    "adam_minibatch": (GDRegressor, dict(optimizer="adam", learning_rate=0.05, batch_size=32,
                                         random_state=3, alpha=0.01, l1_ratio=0.5), "y"),
    "nesterov_full": (GDRegressor, dict(tol=None), "y"),
    "adagrad_f32": (GDRegressor, dict(optimizer="adagrad", learning_rate=0.5, batch_size=64,
                                      random_state=1, standardize=False), "y32"),
    "rmsprop_huber_2outputs": (GDRegressor, dict(optimizer="rmsprop", loss="huber",
                                                 learning_rate=0.05, batch_size=50,
                                                 random_state=2), "Y2"),
    "momentum_classifier_early": (GDClassifier, dict(optimizer="momentum", batch_size=40,
                                                     early_stopping=True, random_state=4,
                                                     n_iter_no_change=50), "labels"),
    "sgd_cosine": (GDRegressor, dict(optimizer="sgd", schedule="cosine", batch_size=16,
                                     random_state=5, tol=None), "y"),
}
for name, (cls, params, target) in cases.items():
    path = os.path.join(out, f"{name}.fastgd")
    Xc = X.astype(np.float32) if target == "y32" else X
    yc = {"y": y, "y32": y.astype(np.float32), "Y2": Y2, "labels": labels}[target]
    model = cls(max_epochs=30, checkpoint=path, checkpoint_every=4, callbacks=stop_after(10),
                **params)
    model.fit(Xc, yc)
    print(name, model.n_iter_)
