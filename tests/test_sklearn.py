"""scikit-learn's own estimator checks, and use inside its tools."""

import numpy as np
from conftest import make_problem
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastgd import GDRegressor


@parametrize_with_checks([GDRegressor(learning_rate=0.1, max_epochs=200)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_in_pipeline_and_cross_validation():
    X, y, _ = make_problem(600, 4)
    pipe = make_pipeline(StandardScaler(), GDRegressor(learning_rate=0.1, standardize=False))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert np.all(scores > 0.99)
