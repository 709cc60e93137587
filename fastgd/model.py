"""A fitted linear model that predicts with NumPy alone: no scikit-learn, no training code.

`LinearModel` is what a fit leaves: coefficients, intercepts, the loss (whose inverse link
turns raw outputs into predictions or probabilities) and, for a classifier, the classes. The
estimators predict through it; `fastgd.load` returns one where scikit-learn is not installed
(`LinearModel.load` always does), for a server or a batch job that only predicts.
"""

from __future__ import annotations

import numpy as np

from fastgd import _persist, losses
from fastgd._encoding import ENCODING, check_encoding
from fastgd._validation import as_data, raise_if_nonfinite


OFFSET = "offset_column_"  # fastgd train --offset's column, kept in the model file


def check_offset_column(column, classes, features) -> None:
    """A ValueError unless a saved offset column is a regressor's (`classes` None) and a
    name beside its `features`' names (a table's columns: the command line's models have
    them)."""
    if (not isinstance(column, str) or not column or classes is not None or features is None
            or column in [str(name) for name in features]):
        raise ValueError(f"{OFFSET} is not a regressor's column beside its named features")


class LinearModel:
    """A linear model's predictions: raw outputs z = X coef_^T + intercept_, then the loss's
    inverse link (identity for the squared and Huber losses, the softmax of a classifier).

    Attributes are those of the estimator it comes from: ``coef_`` of shape (n_features,)
    or (n_outputs, n_features), ``intercept_``, ``n_features_in_``, ``feature_names_in_``
    (or None), and ``classes_`` for a classifier (else None). ``loss`` is the
    fastgd.losses object the model was trained on. A model the command line trained on a
    table with text columns also keeps their encoding (``input_features_``,
    ``categories_``, ``category_of_``: fastgd/_encoding.py), read by a server, and a
    regressor it trained with ``--offset COLUMN`` that column's name, ``offset_column_``
    (else None): the column added to the raw outputs, which a server asks for.
    """

    def __init__(self, coef, intercept, loss: losses.Loss, *, classes=None,
                 feature_names=None):
        self.coef_, self.intercept_, self.loss = coef, intercept, loss
        self.classes_, self.feature_names_in_ = classes, feature_names
        self.n_features_in_ = np.shape(coef)[-1]
        self.offset_column_ = None

    @classmethod
    def load(cls, path) -> LinearModel:
        """The model of a file that ``save`` wrote (a checkpoint's model too)."""
        return _persist.read(path, cls.from_saved)[0]

    @classmethod
    def from_saved(cls, saved: _persist.Saved) -> LinearModel:
        """From a model file's contents (fastgd/_persist.py), checked."""
        d = saved.values.get("n_features_in_")
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError("n_features_in_ is missing or not a valid number")
        coef, intercept = saved.arrays.get("coef_"), saved.values.get(
            "intercept_", saved.arrays.get("intercept_"))
        classes = saved.arrays.get("classes_")
        task = {"GDClassifier": "classification", "GDRegressor": "regression"}.get(saved.kind)
        name = saved.params.get("loss")
        if task is None or name not in losses.names(task):
            raise ValueError(f"a {saved.kind} with loss={name!r} is not a model fastgd makes")
        if task == "classification":
            if classes is None or classes.ndim != 1 or len(classes) < 2:
                raise ValueError("classes_ is not an array of 2 labels or more")
            k = 1 if len(classes) == 2 else len(classes)
            loss = losses.for_classes(len(classes), name, **saved.params)
            shapes = ((k, d), (k,))
        else:
            loss = losses.get(name, **saved.params)
            k = 1 if np.ndim(coef) == 1 else len(coef)
            shapes = ((d,), ()) if np.ndim(coef) == 1 else ((k, d), (k,))
        for key, value, shape in zip(("coef_", "intercept_"), (coef, intercept), shapes,
                                     strict=True):
            value = np.asarray(value)
            if value.shape != shape or value.dtype.kind != "f" or not np.isfinite(value).all():
                raise ValueError(f"{key} is not an array of shape {shape} of finite numbers")
        model = cls(coef, intercept, loss, classes=classes,
                    feature_names=saved.arrays.get("feature_names_in_"))
        encoding = [saved.arrays.get(name) for name in ENCODING]
        if encoding[0] is not None:
            check_encoding(*encoding, d)
            for name, value in zip(ENCODING, encoding, strict=True):
                setattr(model, name, value)
        column = saved.values.get(OFFSET)
        if column is not None:
            check_offset_column(column, classes, model.feature_names_in_
                                if encoding[0] is None else encoding[0])
            model.offset_column_ = column
        return model

    def decision_function(self, X):
        """The raw outputs: (n_samples,) for one output (a binary classifier's logit),
        else (n_samples, n_outputs)."""
        z = self.raw_outputs(self._checked(X))
        if self.classes_ is not None and z.ndim == 2 and z.shape[1] == 1:
            return z[:, 0]
        return z

    def predict(self, X, offset=None):
        """Predictions (a regressor's, in X's floating dtype), or the most probable class;
        `offset` as GDRegressor.predict takes it."""
        return self.predictions(X, offset=offset)[0]

    def predictions(self, X, proba: bool = False, offset=None):
        """(predict(X), predict_proba(X) if `proba` else None, whether the numbers behind
        them are finite) from one product of X: a server's answer and its check (an
        overflowing prediction, or logit, is inf; a class of a NaN logit, meaningless); a
        regressor's `offset` (n_samples,) added to every raw output first."""
        z = self.raw_outputs(self._checked(X))
        if self.classes_ is None:
            if proba:
                raise AttributeError("a regressor has no class probabilities")
            predicted = self.loss.inverse_link(self._shifted(z, offset))
            return predicted, None, bool(np.isfinite(predicted).all())
        if offset is not None:
            raise ValueError("offset is for regressors; this model is a classifier")
        if proba:
            self._check_proba()
        return (self.classes_[self.best_class(z)], self.loss.proba(z) if proba else None,
                bool(np.isfinite(z).all()))

    def predict_proba(self, X):
        """Probabilities of the classes (columns in the order of ``classes_``)."""
        self._check_proba()
        return self.loss.proba(self.raw_outputs(self._checked(X)))

    def predict_log_proba(self, X):
        """Log-probabilities of the classes, without overflow at any logit."""
        self._check_proba()
        return self.loss.log_proba(self.raw_outputs(self._checked(X)))

    @property
    def has_proba(self) -> bool:
        """Whether the model gives class probabilities: a classifier's whose loss has them
        (not the hinge losses')."""
        return self.classes_ is not None and self.loss.probabilities

    def _check_proba(self):
        if self.classes_ is None:
            raise AttributeError("a regressor has no class probabilities")
        if not self.loss.probabilities:
            raise AttributeError(f"the {self.loss.name} loss gives no class probabilities: "
                                 f"use decision_function")

    def to_onnx(self, dtype=np.float32):
        """The model as an ONNX graph (onnx.ModelProto) for ONNX Runtime: input X of
        `dtype`, outputs as skl2onnx names them (fastgd/onnx.py)."""
        from fastgd import onnx

        return onnx.convert(self, dtype)

    def raw_outputs(self, X):
        """X @ coef_^T + intercept_ for X already checked, in X's floating dtype: (n,) for
        coef_ of shape (n_features,), else (n, n_outputs)."""
        return X @ self.coef_.astype(X.dtype).T + np.asarray(self.intercept_, dtype=X.dtype)

    @staticmethod
    def _shifted(z, offset):
        """Raw outputs z (n,) or (n, k) plus an offset (n,) for every output."""
        if offset is None:
            return z
        offset = np.asarray(offset, dtype=np.float64)
        if offset.shape != (len(z),) or not np.isfinite(offset).all():
            raise ValueError(f"offset must be {len(z)} finite numbers, one a row of X; got "
                             f"shape {offset.shape}")
        return z + (offset if z.ndim == 1 else offset[:, None]).astype(z.dtype)

    @staticmethod
    def best_class(z):
        """The index of the most probable class of each row of logits z (n, k)."""
        return (z[:, 0] > 0).astype(np.intp) if z.shape[1] == 1 else z.argmax(axis=1)

    def _checked(self, X):
        """X as the estimator checks it: its features (by name, for a table with column
        names and a model fitted on one), their number, finite values."""
        columns = getattr(X, "columns", None)
        if columns is not None and self.feature_names_in_ is not None and (
                len(columns) != len(self.feature_names_in_)
                or any(str(a) != str(b) for a, b in zip(columns, self.feature_names_in_,
                                                         strict=True))):
            raise ValueError(f"X's columns {list(map(str, columns))} are not the features "
                             f"the model was fitted on, {list(self.feature_names_in_)}")
        X = as_data(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but the model is expecting "
                             f"{self.n_features_in_} features as input.")
        raise_if_nonfinite(X)
        return X
