"""scikit-learn's own estimator checks, and use inside its tools."""

import numpy as np
from conftest import make_problem
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastgd import GDClassifier, GDRegressor


# A loss with a kink has no learning_rate="auto" for first-order steps (no curvature
# bound): partial_fit asks for a numeric rate, a ValueError saying so, where these checks
# call it with the defaults; the hinge with one (the last estimator) passes them.
NEEDS_A_RATE = "partial_fit of a loss with a kink needs a numeric learning_rate"


def expected_failures(estimator):
    if getattr(estimator, "loss", None) != "hinge" or estimator.learning_rate != "auto":
        return {}
    return dict.fromkeys(("check_fit_score_takes_y", "check_n_features_in_after_fitting",
                          "check_estimators_partial_fit_n_features"), NEEDS_A_RATE)


@parametrize_with_checks([GDRegressor(), GDClassifier(), GDClassifier(loss="hinge"),
                          GDClassifier(loss="modified_huber"),
                          GDClassifier(loss="hinge", optimizer="sgd", learning_rate=0.01)],
                         expected_failed_checks=expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_in_pipeline_and_cross_validation():
    X, y, _ = make_problem(600, 4)
    pipe = make_pipeline(StandardScaler(), GDRegressor(learning_rate=0.1, standardize=False))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert np.all(scores > 0.99)


def test_grid_search_pickle_joblib_and_dataframes(tmp_path):
    import pickle

    import joblib
    import pandas as pd
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    X, y, _ = make_problem(400, 3)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    search = GridSearchCV(GDRegressor(max_epochs=50, tol=None),
                          {"learning_rate": [0.01, 0.1], "optimizer": ["sgd", "adam"]}, cv=3)
    search.fit(frame, y)
    best = search.best_estimator_
    assert list(best.feature_names_in_) == ["a", "b", "c"]
    assert search.best_score_ > 0.99
    for again in (pickle.loads(pickle.dumps(best)),
                  joblib.load(joblib.dump(best, tmp_path / "m.joblib")[0])):
        np.testing.assert_array_equal(again.predict(frame), best.predict(frame))
    fresh = clone(best)
    assert fresh.get_params() == best.get_params() and not hasattr(fresh, "coef_")


def test_the_kernel_needs_no_scikit_learn():
    """scikit-learn is the estimators' dependency: without it, fastgd imports, the kernel
    runs, and GDRegressor says what to install."""
    import subprocess
    import sys

    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
import numpy as np, fastgd
X = np.ones((3, 1)); y = np.array([1.0, 2.0, 3.0])
print(round(fastgd.loss_and_grad(X, y, np.zeros(1), 0.0)[0], 4))
try:
    fastgd.GDRegressor
except ImportError as error:
    print(error)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "4.6667"
    assert "GDRegressor needs scikit-learn: pip install 'fastgd[sklearn]'" in out[1]
