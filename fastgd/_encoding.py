"""Tables with text or categorical columns on the command line: one-hot encoded, sparse.

`fastgd train` on a CSV or Parquet file whose feature columns hold text, categories or
booleans encodes each such column as one indicator column per level (its distinct values
in the training file, as strings, sorted), beside the numeric columns, into a CSR matrix:
a row stores its numeric values that are not zero and a 1 for each of its levels. The
model file keeps the encoding (`Encoding.attach`): the table's feature columns in order,
the levels and the column each encodes, so `fastgd predict` and `evaluate` encode new
rows the same way. A level not seen in training encodes as no indicator (as scikit-learn's
OneHotEncoder(handle_unknown="ignore")); how many rows held one is reported.

Missing values follow `--missing`: "error" (the default) stops with the column and the
first row; "zero" reads a missing number as 0 and a missing category as no indicator.
Infinities are an error either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MISSING = ("error", "zero")
ENCODING = ("input_features_", "categories_", "category_of_")  # Encoding.attach's attributes


@dataclass
class Encoding:
    features: list          # the table's feature columns, in order
    levels: dict            # column -> its levels (strings, sorted), for the encoded ones

    @classmethod
    def learn(cls, table, features) -> Encoding | None:
        """The encoding of `table`'s feature columns, or None if they are all numbers."""
        return cls.of_levels(features, levels_in(table, [
            column for column in features if encodes(table, column)]))

    @classmethod
    def of_levels(cls, features, levels: dict) -> Encoding | None:
        """The encoding of the encoded columns' `levels` (sets of strings, those of a
        whole table's chunks), or None if there are none."""
        # a text column with no value at all (--missing zero) encodes as nothing
        features = [column for column in features if levels.get(column, True)]
        levels = {column: sorted(values) for column, values in levels.items() if values}
        return cls(features, levels) if levels else None

    @property
    def n_columns(self) -> int:
        return sum(len(self.levels.get(column, (0,))) for column in self.features)

    def encode(self, table, missing: str = "error", log=None, hint=None):
        """The rows of `table` as a CSR matrix of n_columns columns (float64); `hint`: what
        the error of a missing value suggests (default: the command line's options)."""
        import scipy.sparse as sp

        from fastgd._tables import MISSING_HINT, check_complete, check_present, numeric_values

        check_present(table, self.features)
        n = len(table)
        rows, columns, values = [], [], []
        position = 0
        for column in self.features:
            series = table[column]
            if column in self.levels:
                levels = self.levels[column]
                absent = series.isna().to_numpy()
                if missing == "error":
                    check_complete(table, [column], absent[:, None], "missing",
                                   hint or MISSING_HINT)
                present = np.flatnonzero(~absent)
                codes = series.iloc[present].astype(str).map(
                    {level: i for i, level in enumerate(levels)}).to_numpy(dtype=np.float64)
                known = ~np.isnan(codes)  # NaN: a level not seen in training
                unseen = len(codes) - int(known.sum())
                if unseen and log is not None:
                    print(f"column {column!r}: {unseen:,} "
                          f"{'rows hold levels' if unseen > 1 else 'row holds a level'} not "
                          f"seen in training (encoded as none)", file=log)
                rows.append(present[known])
                columns.append(position + codes[known].astype(np.int64))
                values.append(np.ones(int(known.sum())))
                position += len(levels)
            else:
                x = numeric_values(table, column, allow_missing=missing == "zero")
                stored = np.flatnonzero(x)
                rows.append(stored)
                columns.append(np.full(len(stored), position))
                values.append(x[stored])
                position += 1
        X = sp.coo_matrix((np.concatenate(values), (np.concatenate(rows),
                                                   np.concatenate(columns))),
                          shape=(n, position)).tocsr()
        X.sum_duplicates()
        return X

    def attach(self, model) -> None:
        """Keep the encoding in the fitted model (saved with it): input_features_, the
        table's feature columns; categories_, each indicator's level; category_of_, the
        input feature each encodes."""
        model.input_features_ = np.array(self.features, dtype=object)
        model.categories_ = np.array([level for column in self.features
                                      for level in self.levels.get(column, ())], dtype=object)
        model.category_of_ = np.array([i for i, column in enumerate(self.features)
                                       for _ in self.levels.get(column, ())], dtype=np.int64)

    @classmethod
    def of(cls, model) -> Encoding | None:
        """The encoding a model was trained with (None: it took numbers as they were)."""
        features = getattr(model, "input_features_", None)
        if features is None:
            return None
        levels = {}
        for level, index in zip(model.categories_, model.category_of_, strict=True):
            levels.setdefault(features[index], []).append(level)
        return cls(list(features), levels)


def check_encoding(features, categories, category_of, n_columns: int) -> None:
    """A ValueError unless a saved encoding (Encoding.attach's arrays) makes n_columns
    features: input features named once each, each indicator's level a string, the
    indicators of each input feature together, in order, distinct."""
    codes = np.asarray(category_of)
    of = codes.tolist()
    encoded = set(of) if codes.dtype.kind in "iu" and codes.ndim == 1 else {-1}
    if (len(of) != len(categories) or not encoded <= set(range(len(features)))
            or len(features) - len(encoded) + len(categories) != n_columns
            or not all(isinstance(x, str) for x in [*features, *categories])
            or len(set(features)) != len(features) or of != sorted(of)
            or len(set(zip(of, list(categories)))) != len(categories)):
        raise ValueError("the table's encoding (input_features_, categories_, "
                         "category_of_) does not make the model's features")


def encodes(table, column) -> bool:
    """Whether a feature column is one-hot encoded: text, categories or booleans."""
    from fastgd._tables import is_numeric

    return not is_numeric(table, column) or table[column].dtype.kind == "b"


def levels_in(table, columns) -> dict:
    """The distinct values of each of `columns`, as strings (missing values left out)."""
    return {column: set(table[column].dropna().drop_duplicates().astype(str))
            for column in columns}
