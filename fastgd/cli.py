"""The `fastgd` command line (also `python -m fastgd`).

Each command is a function of its parsed arguments. A problem the user can fix (a missing
file, an unknown column, a bad learning rate, a diverging run) is one line on stderr and
exit status 2, never a traceback: see `main`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import warnings

import numpy as np

import fastgd
from fastgd import bench, losses
from fastgd.solvers import FULL_BATCH_SOLVERS, optimizer_names
from fastgd._commands import number, positive_int, run
from fastgd._encoding import MISSING

TASKS = ("regression", "classification")
REGRESSION_LOSSES, CLASSIFICATION_LOSSES = losses.names("regression"), losses.names(
    "classification")
OPTIONS = {"learning_rate": "--learning-rate", "max_epochs": "--epochs",  # estimator: CLI
           "batch_size": "--batch-size", "validation_fraction": "--validation-fraction",
           "n_threads": "--threads", "random_state": "--seed"}
LOSS_OPTIONS = {"power": "tweedie", "quantile": "quantile"}  # a loss's option: its loss
METRICS = {  # key in --json: label printed
    "regression": {"rmse": "RMSE", "mae": "MAE", "r2": "R²",
                   # the log-link losses' deviance, the quantile loss's pinball, and D²
                   "deviance": "deviance", "pinball": "pinball", "d2": "D²"},
    "classification": {"accuracy": "accuracy", "f1_macro": "F1 (macro)",
                       "log_loss": "log-loss"},
}


def demo(args) -> None:
    from fastgd._demo import demo

    demo(args.out, args.rows, args.features)


def train(args) -> None:
    from fastgd import _plots

    targets, features = _names(args.target, "--target"), _names(args.features, "--features")
    _check_outputs({"-o": args.output, "--json": args.json, "--plot": args.plot,
                    "--checkpoint": args.checkpoint},
                   [args.data] + ([args.target_file] if args.target_file else []))
    if args.plot:
        _plots.check_output(args.plot)
    if args.resume and not (args.checkpoint and os.path.exists(args.checkpoint)):
        raise ValueError("--resume goes on from --checkpoint FILE, which must exist"
                         + (f": {args.checkpoint!r} does not" if args.checkpoint else ""))

    streamed = _streamed_data(args, targets, features)
    try:
        _train(args, targets, features, streamed)
    finally:
        if streamed is not None:
            streamed[0].remove()


def _train(args, targets, features, streamed):
    """train's work, on the table in memory or on its rows spilled to disk (streamed:
    _streamed_data's)."""
    from fastgd import _plots

    if streamed is None:
        X, y, offset, features, task, encoding = _training_data(args, targets, features)
        X_train, X_test, y_train, y_test, offset_train, offset_test = _split(
            X, y, offset, task, args.test_fraction, args.seed)
        del X, y, offset
    else:
        spilled, y, offset, features, task, encoding = streamed
        X_train, X_test, test = spilled.X_train, spilled.X_test, spilled.mask_test
        y_train, y_test = y[~test], y[test]
        offset_train, offset_test = (None, None) if offset is None else (offset[~test],
                                                                         offset[test])
    if features is None:
        print(f"features: {X_train.shape[1]:,} sparse columns")
    else:
        print(f"features: {len(features)} column{'s' if len(features) > 1 else ''} "
              f"({_shorten(features)})")
    if args.offset is not None:
        print(f"offset: column {args.offset!r}, added to each row's raw output")
    model = _estimator(task, args)
    validating = (f" ({model.validation_fraction:g} of them held out to validate on for "
                  f"--early-stopping)" if model.early_stopping else "")
    print(f"rows: {X_train.shape[0]:,} to train on{validating}, {X_test.shape[0]:,} to test on "
          f"(--test-fraction {args.test_fraction}, --seed {args.seed})")

    start = time.perf_counter()
    with_offset = _offset_arg(offset_train)
    model.fit(_frame(X_train, features), y_train, **with_offset,
              resume=args.checkpoint if args.resume else None)
    seconds = time.perf_counter() - start
    epochs = model.n_iter_
    final = (f"final training loss "
             f"{model._mean_loss(_frame(X_train, features), y_train, **with_offset):.6g}"
             if streamed is None else  # another read of the file: the last epoch's instead
             f"last epoch's training loss {model.history_['loss'][-1]:.6g}")
    print(f"trained {_describe(model)}: {epochs} epoch{'s' if epochs > 1 else ''} in "
          f"{seconds:.2f} s ({X_train.shape[0] * epochs / max(seconds, 1e-9) / 1e6:.3g} M "
          f"rows/s), {final}")
    if encoding is not None:  # predict and evaluate encode new rows the same way
        encoding.attach(model)
    if args.offset is not None:  # and add the same column to the raw outputs
        model.offset_column_ = args.offset
    if args.output:  # first: whatever happens next, the training is not lost
        model.save(args.output)
        print(f"model written to {args.output} (then: fastgd predict {args.output} DATA "
              f"-o predictions.csv)")
    else:
        print("model not saved (give -o MODEL to keep it)")

    if X_test.shape[0]:
        scores = _scores(model, _frame(X_test, features), y_test, task, offset_test)
        _print_scores(scores, task, f"test metrics ({X_test.shape[0]:,} rows)")
    else:
        scores = _scores(model, _frame(X_train, features), y_train, task, offset_train)
        _print_scores(scores, task, "training metrics (--test-fraction 0: no test rows)")
    if args.json:
        _write_json(args.json, {"task": task, "epochs": epochs, "seconds": seconds,
                                "rows_train": X_train.shape[0], "rows_test": X_test.shape[0],
                                "metrics": scores})
    if args.plot:
        curves = {"training loss": model.history_["loss"]}
        if "val_loss" in model.history_:
            curves["validation loss"] = model.history_["val_loss"]
        _plots.loss_curves(args.plot, curves, title=f"{_describe(model)} on "
                           f"{os.path.basename(args.data)}")
        print(f"loss curve written to {args.plot}")


def _streamed_data(args, targets, features):
    """A table or svmlight file too large for memory (or --stream) read by chunks into
    memory-mapped rows on disk (fastgd/_spill.py): as _training_data's, with a Spilled
    for X (the targets and the offset read whole, split by its mask_test); None for data
    read into memory."""
    from fastgd import _spill, _tables
    from fastgd._encoding import Encoding

    if not _streaming(args):
        return None
    sparse = _tables.is_sparse_file(args.data)
    log = None if args.quiet else sys.stderr
    encoding = offset = None
    if sparse:
        _check_sparse_options(args, features)
    else:
        if not targets:
            raise ValueError("--target COL names the column to predict (required for a "
                             "table)")
        names, offsets = _spill.column_names(args.data), _listed(args.offset)
        features = features or [name for name in names if name not in targets + offsets]
        _tables.check_present(names, features + targets + offsets, f"data file {args.data!r}")
        _check_columns(f"data file {args.data!r}", features, targets, args.offset)
        table = _spill.target_table(args.data, targets + offsets)
        task, why = _task(table, targets, args.task)
        print(f"task: {task} ({why})")
        y, offset = _targets(table, targets, task), _offset_values(table, args.offset, task)
        del table
        text = _spill.text_columns(args.data, features)
        if text:  # their levels in the whole file first, as a table in memory finds them
            encoding = Encoding.of_levels(features, _spill.levels(args.data, features, text,
                                                                   log))
    print(f"streaming {args.data} ({os.path.getsize(args.data) / 1e9:.2f} GB"
          f"{'' if args.stream else ', over a quarter of the memory available'}) by chunks "
          f"into memory-mapped rows on disk; the test rows drawn at random (not stratified)")
    start = time.perf_counter()
    spilled = _spill.spill(args.data, features, args.test_fraction, args.seed, args.missing,
                           args.spill_dir, log, encoding)
    seconds = time.perf_counter() - start
    n = len(spilled.mask_test)
    print(f"streamed {n:,} rows in {seconds:.2f} s ({n / seconds / 1e6:.3g} M rows/s) into "
          f"{spilled.directory}")
    if encoding is not None:
        _print_encoding(encoding)
    if sparse:
        y = spilled.targets
        task, why = _task_of_values(y, args.task)
        print(f"task: {task} ({why})")
    return spilled, y, offset, None if sparse or encoding else features, task, encoding


def _training_data(args, targets, features):
    """(X, y, the --offset column's values or None, the feature columns' names (None:
    sparse data), the task, the table's encoding (fastgd/_encoding.py; None: numbers as
    they are)) of DATA."""
    from fastgd import _tables
    from fastgd._encoding import Encoding

    if _tables.is_sparse_file(args.data):
        _check_sparse_options(args, features, holds_targets=False)
        X, y = _read_sparse(args.data, args.target, args.target_file)
        task, why = _task_of_values(y, args.task)
        print(f"task: {task} ({why})")
        return X, y, None, None, task, None
    if not targets:
        raise ValueError("--target COL names the column to predict (required for a table)")
    if args.target_file:
        raise ValueError("--target-file gives the targets of sparse data (a .npz of "
                         "scipy.sparse.save_npz); a table's are its --target column")
    offsets = _listed(args.offset)
    table = _read(args.data, None if features is None else features + targets + offsets)
    features = features or [c for c in table.columns if c not in targets + offsets]
    _check_columns(table.attrs["name"], features, targets, args.offset)
    task, why = _task(table, targets, args.task)
    print(f"task: {task} ({why})")
    y, offset = _targets(table, targets, task), _offset_values(table, args.offset, task)
    encoding = Encoding.learn(table, features)
    if encoding is not None:  # its columns as the text they hold, as predict reads them
        columns = list(encoding.levels)  # (_model_input): "007" is not 7, "1" not 1.0
        table[columns] = _tables.read_table(args.data, "data", columns, columns)[columns]
        encoding = Encoding.learn(table, features)
    if encoding is None:
        return (_tables.numeric(table, features, "feature", args.missing == "zero"), y,
                offset, features, task, None)
    X = encoding.encode(table, args.missing)
    _print_encoding(encoding)
    return X, y, offset, None, task, encoding


def _print_encoding(encoding) -> None:
    n = encoding.n_columns
    print(f"encoded {len(encoding.levels)} text or categorical column"
          f"{'s' if len(encoding.levels) > 1 else ''} ({_shorten(list(encoding.levels))}) "
          f"as {n - len(encoding.features) + len(encoding.levels):,} indicator columns, one "
          f"a level: {n:,} sparse features")


def _check_sparse_options(args, features, holds_targets=True) -> None:
    """Options that name a table's columns are errors for sparse data (and --target-file
    for an svmlight file, which holds its targets, when it streams)."""
    if features is not None:
        raise ValueError(f"--features names columns of a table; {args.data} is sparse "
                         f"data, whose columns are all features")
    if getattr(args, "offset", None) is not None:
        raise ValueError(f"--offset names a column of a table; {args.data} is sparse data, "
                         f"whose columns have no names")
    if holds_targets and (getattr(args, "target", None) or getattr(args, "target_file", None)):
        raise ValueError(f"{args.data} is an svmlight file, which holds its targets: "
                         f"--target and --target-file are for tables and .npz files")


def predict(args) -> None:
    from fastgd import _tables

    pd = _tables.pandas()
    keep = _names(args.keep, "--keep") or []
    _check_outputs({"-o": args.output}, [args.model, args.data])
    model = _load(args.model)
    if args.proba and not _gives_proba(model):
        raise ValueError("--proba needs a classifier; this model is a regressor"
                         if not hasattr(model, "classes_") else
                         f"--proba: this classifier's loss, {_loss_of(model).name}, gives "
                         f"no probabilities")
    if keep and _tables.is_sparse_file(args.data):
        raise ValueError(f"--keep copies columns of a table; {args.data} is sparse data")
    frames = []
    for table, X, _, offset in _inputs(model, args, keep, log=sys.stderr):
        _tables.check_present(table, keep)
        frame = table[keep].copy() if keep else pd.DataFrame(index=range(X.shape[0]))
        predictions = model.predict(X, **_offset_arg(offset))
        if predictions.ndim == 1:
            frame["prediction"] = predictions
        else:
            for j in range(predictions.shape[1]):
                frame[f"prediction_{j}"] = predictions[:, j]
        if args.proba:
            probabilities = model.predict_proba(X)
            for j, label in enumerate(model.classes_):
                frame[f"proba_{label}"] = probabilities[:, j]
        frames.append(frame)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    _tables.write_table(args.output, frame)
    if args.output != "-":
        print(f"{len(frame):,} predictions written to {args.output}", file=sys.stderr)


def evaluate(args) -> None:
    from fastgd._tables import is_sparse_file

    targets = _names(args.target, "--target")
    _check_outputs({"--json": args.json}, [args.model, args.data]
                   + ([args.target_file] if args.target_file else []))
    model = _load(args.model)
    task = "classification" if hasattr(model, "classes_") else "regression"
    if not is_sparse_file(args.data):
        if not targets:
            raise ValueError("--target COL names the true values' column (required for a "
                             "table)")
        if args.target_file:
            raise ValueError("--target-file gives the targets of sparse data (a .npz of "
                             "scipy.sparse.save_npz); a table's are its --target column")
    ys, predicted, probabilities = [], [], []
    for table, X, y, offset in _inputs(model, args, targets,
                                       regression=task == "regression"):
        ys.append(_targets(table, targets, task) if y is None else y)
        predicted.append(model.predict(X, **_offset_arg(offset)))
        if _gives_proba(model):
            probabilities.append(model.predict_proba(X))
    y = np.concatenate(ys)
    if task == "classification":
        unknown = sorted(set(np.unique(y).tolist()) - set(model.classes_.tolist()), key=str)
        if unknown:
            what = f"target column {targets[0]!r}" if targets else f"{args.data}'s targets"
            raise ValueError(f"{what} holds labels the model was not trained on: "
                             f"{_shorten(unknown)}")
    outputs = len(model.coef_) if task == "regression" and np.ndim(model.coef_) == 2 else 1
    given = 1 if np.ndim(y) == 1 else y.shape[1]
    if task == "regression" and given != outputs:
        raise ValueError(f"the model predicts {outputs} target{'s' if outputs > 1 else ''}; "
                         f"--target names {given}")
    scores = _metrics(task, y, np.concatenate(predicted),
                      np.concatenate(probabilities) if probabilities else None, model)
    _print_scores(scores, task, f"{_describe(model)} on {len(y):,} rows of {args.data}")
    if args.json:
        _write_json(args.json, {"task": task, "rows": len(y), "metrics": scores})


def _inputs(model, args, other, log=sys.stdout, regression=False):
    """DATA's rows and the model's features of them, as (the table (of the `other`
    columns too: --keep, --target), X, an svmlight file's targets or None, the offset
    column's values (_offset_column) or None): the whole file at once, or a chunk at a
    time for a file that streams (fastgd/_spill.py; the targets `regression` asks for and
    the offset read as numbers)."""
    from fastgd import _spill
    from fastgd._tables import check_present, is_sparse_file, pandas

    offset = _offset_column(model, args, log)
    other = list(dict.fromkeys([*(other or []), *_listed(offset)]))  # read, not a feature
    if not _streaming(args):
        if is_sparse_file(args.data):
            X, y = _read_sparse(args.data, getattr(args, "target", None),
                                getattr(args, "target_file", None), model.n_features_in_,
                                log, targets_needed=hasattr(args, "target"))
            yield pandas().DataFrame(index=range(X.shape[0])), X, y, None
        else:
            table, X = _model_input(model, args.data, other, args.missing, log)
            yield table, X, None, _offset_values(table, offset)
        return
    print(f"streaming {args.data} by chunks", file=log)
    if is_sparse_file(args.data):
        _check_sparse_options(args, None)
        for X, y in _spill.svmlight_chunks(args.data, model.n_features_in_):
            yield pandas().DataFrame(index=range(X.shape[0])), X, y, None
        return
    features, text, encoding = _model_features(model, args.data, other)
    columns = list(dict.fromkeys(features + other))
    # as a file read whole says it: pyarrow's own error for a missing column is a traceback
    check_present(_spill.column_names(args.data), columns, f"data file {args.data!r}")
    numbers = [c for c in features if c not in text] + (other if regression else
                                                        _listed(offset))
    for chunk in _spill.chunks(args.data, columns, text, numbers):
        yield (chunk, _features_of(model, chunk, features, encoding, args.missing), None,
               _offset_values(chunk, offset))


def _offset_column(model, args, log):
    """The column of DATA added to the model's raw outputs: --offset, else the one the
    model was trained with (fastgd train --offset keeps it: offset_column_); None for
    neither. Said on `log`, as it is read although no feature."""
    from fastgd._encoding import Encoding
    from fastgd._tables import is_sparse_file

    saved = getattr(model, "offset_column_", None)
    column = args.offset if args.offset is not None else saved
    if column is None:
        return None
    if hasattr(model, "classes_"):
        raise ValueError("--offset is for regressors; this model is a classifier")
    if is_sparse_file(args.data):
        whose = ("--offset names" if args.offset is not None
                 else f"the model adds column {column!r} (fastgd train --offset),")
        raise ValueError(f"{whose} a column of a table; {args.data} is sparse data, whose "
                         f"columns have no names")
    encoding = Encoding.of(model)
    features = (getattr(model, "feature_names_in_", None) if encoding is None
                else encoding.features)
    if features is not None and column in [str(name) for name in features]:
        raise ValueError(f"--offset {column!r} is one of the model's features")
    source = "--offset" if args.offset is not None else "the model's"
    trained = f"; the model was trained with {saved!r}" if saved not in (None, column) else ""
    print(f"offset: column {column!r} ({source}), added to each row's raw output{trained}",
          file=log)
    return column


def _streaming(args) -> bool:
    """Whether DATA is read by chunks: --stream, or by default a file over a quarter of the
    memory available; never a .npz, which is read whole."""
    from fastgd import _spill, _tables

    if _tables._kind(args.data) == "npz":
        if args.stream:
            raise ValueError(f"{args.data} is a .npz, which is read whole; svmlight files, "
                             f"CSV, Parquet and .npy stream")
        return False
    if args.stream and not os.path.isfile(args.data):
        raise ValueError(f"data file {args.data!r} does not exist"
                         + (" (it is a directory)" if os.path.isdir(args.data) else ""))
    if args.stream is not None:
        return args.stream
    return os.path.isfile(args.data) and _spill.streams(args.data)


def info(args) -> None:
    fastgd.show_config()


def _read(path, columns=None, log=sys.stdout, text=()):
    from fastgd._tables import read_table

    start = time.perf_counter()
    table = read_table(path, "data", columns, text)
    print(f"read {path}: {table.shape[0]:,} rows, {table.shape[1]} columns in "
          f"{time.perf_counter() - start:.2f} s", file=log)
    return table


def _read_sparse(path, target=None, target_file=None, n_features=None, log=None,
                 targets_needed=True):
    """(X, y) of a sparse data file: y the svmlight file's targets, or --target-file's
    (None where not needed: predict); n_features: a model's (fastgd/_tables.py:
    read_sparse)."""
    from fastgd._tables import is_numeric, labels, numeric, read_sparse, read_table

    start = time.perf_counter()
    X, y = read_sparse(path, "data", n_features)
    print(f"read {path}: {X.shape[0]:,} rows, {X.shape[1]:,} columns, {X.nnz:,} stored "
          f"entries (sparse) in {time.perf_counter() - start:.2f} s", file=log or sys.stdout)
    if target:
        raise ValueError(f"--target names a column of a table; {path} is sparse data: "
                         f"svmlight files hold their targets, for a .npz give --target-file")
    if target_file is not None:
        if y is not None:
            raise ValueError(f"{path} holds its targets (svmlight): --target-file is for a "
                             f".npz of scipy.sparse.save_npz")
        table = read_table(target_file, "target")
        if table.shape[1] != 1 or table.shape[0] != X.shape[0]:
            raise ValueError(f"--target-file {target_file!r} must hold one column of "
                             f"{X.shape[0]:,} values, one a row of {path}; it has "
                             f"{table.shape[1]} columns of {table.shape[0]:,}")
        column = table.columns[0]
        y = (numeric(table, [column], "target")[:, 0] if is_numeric(table, column)
             else labels(table, column))
    elif y is None and targets_needed:
        raise ValueError(f"{path} holds X only (scipy.sparse.save_npz): give its targets "
                         f"with --target-file FILE (one column, a row of {path} each)")
    return X, y


def _task_of_values(y, asked):
    """The task asked for, or else the one the values of y suggest, and why."""
    if asked:
        return asked, "as --task asks"
    values = np.unique(y)
    if y.dtype.kind not in "biuf" or len(values) <= 2:
        return "classification", (f"the targets hold {len(values)} distinct values; --task "
                                  f"to choose")
    return "regression", "the targets are numeric; --task classification if they are labels"


def _model_input(model, data, other, missing="error", log=sys.stdout):
    """DATA's table and the features the model takes from it (_model_features, _features_of).
    """
    from fastgd._encoding import Encoding

    table = None
    if Encoding.of(model) is None and getattr(model, "feature_names_in_", None) is None:
        table = _read(data, log=log)  # all its columns: the model's are those but `other`
    features, text, encoding = _model_features(model, data, other, table)
    if table is None:
        table = _read(data, list(dict.fromkeys(features + list(other))), log, text=text)
    return table, _features_of(model, table, features, encoding, missing, log)


def _model_features(model, data, other, table=None):
    """(The columns of DATA the model takes, those of them read as text, their Encoding or
    None): the columns it was trained on, by name; for a model trained on an encoded
    table, those its encoding names; for a model fitted on unnamed arrays, all columns but
    the `other` ones (targets, --keep) in order (of `table`, or else of the file), as
    many as the model takes."""
    from fastgd import _spill
    from fastgd._encoding import Encoding

    encoding = Encoding.of(model)
    if encoding is not None:
        return encoding.features, list(encoding.levels), encoding
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return list(names), [], None
    columns = list(table.columns) if table is not None else _spill.column_names(data)
    features = [c for c in columns if c not in other]
    if len(features) != model.n_features_in_:
        besides = f" besides {_shorten(other)}" if other else ""
        raise ValueError(f"the model takes {model.n_features_in_} features (it was trained "
                         f"without column names) but {data} has {len(features)} "
                         f"columns{besides}")
    return features, [], None


def _features_of(model, table, features, encoding, missing, log=None):
    """The model's features of a table's rows: numbers (a DataFrame for a model that knows
    their names), or for an encoding its columns encoded the same way (sparse)."""
    from fastgd._tables import numeric

    if encoding is not None:
        return encoding.encode(table, missing, log)
    X = numeric(table, features, "feature", missing == "zero")
    return X if getattr(model, "feature_names_in_", None) is None else _frame(X, features)


def _task(table, targets, asked):
    """The task asked for, or else the one the target's values suggest, and why."""
    from fastgd._tables import is_numeric

    if asked:
        return asked, "as --task asks"
    column = targets[0]
    if len(targets) > 1:
        return "regression", f"{len(targets)} target columns"
    if not is_numeric(table, column) or table[column].dtype.kind == "b":
        return "classification", f"target {column!r} holds labels, not numbers; --task to choose"
    if table[column].nunique() <= 2:
        return "classification", (f"target {column!r} has {table[column].nunique()} distinct "
                                   f"values; --task to choose")
    return "regression", (f"target {column!r} is numeric; --task classification if its values "
                          f"are class labels")


def _targets(table, targets, task):
    from fastgd._tables import labels, numeric

    if task == "classification":
        if len(targets) > 1:
            raise ValueError(f"a classifier predicts one --target column, got {len(targets)}")
        return labels(table, targets[0])
    y = numeric(table, targets, "target")
    return y[:, 0] if len(targets) == 1 else y


def _offset_values(table, column, task="regression"):
    """The offset column's values (float64, finite: any missing is an error, whatever
    --missing says), or None without one."""
    from fastgd._tables import numeric

    if column is None:
        return None
    if task == "classification":  # the log loss takes none (GDRegressor.fit's offset)
        raise ValueError("--offset is for regression: a classifier's loss takes no offset "
                         "(--task regression if the target is a number to predict)")
    return numeric(table, [column], "offset")[:, 0].astype(np.float64, copy=False)


def _offset_arg(offset) -> dict:
    """The keyword argument of an offset for fit and predict, or none (a classifier
    takes none)."""
    return {} if offset is None else {"offset": offset}


def _split(X, y, offset, task, fraction, seed):
    """(X_train, X_test, y_train, y_test, offset_train, offset_test): the offset (None
    without one) split with its rows."""
    arrays = (X, y) if offset is None else (X, y, offset)
    parts = ([part for array in arrays for part in (array, array[:0])] if fraction == 0
             else _train_test_split(arrays, task, fraction, seed))
    return (*parts, None, None) if offset is None else tuple(parts)


def _train_test_split(arrays, task, fraction, seed) -> list:
    """The arrays' rows split at random, `fraction` of them to test on (stratified by
    class where every class has two rows)."""
    from sklearn.model_selection import train_test_split

    y, stratify = arrays[1], None
    if task == "classification":
        classes, counts = np.unique(y, return_counts=True)
        stratify = y if counts.min() >= 2 else None  # every class on both sides
        if stratify is None:
            warnings.warn(f"class {classes[np.argmin(counts)]!r} has a single row, so the "
                          f"test rows are drawn without stratifying", UserWarning,
                          stacklevel=2)
    try:
        return train_test_split(*arrays, test_size=fraction, random_state=seed,
                                stratify=stratify)
    except ValueError as error:  # e.g. too few rows for the fraction asked
        raise ValueError(f"cannot split {arrays[0].shape[0]} rows with --test-fraction "
                         f"{fraction}: {error}") from None


def _estimator(task, args):
    params = dict(optimizer=args.optimizer, learning_rate=args.learning_rate,
                  batch_size=args.batch_size, max_epochs=args.epochs,
                  early_stopping=args.early_stopping, random_state=args.seed,
                  n_threads=args.threads, verbose=0 if args.quiet else 2,
                  checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every)
    if args.validation_fraction is not None:
        params["validation_fraction"] = args.validation_fraction
    if args.loss is not None:
        params["loss"] = args.loss
    if args.alpha is not None:
        params["alpha"] = args.alpha
    for name, owner in LOSS_OPTIONS.items():  # the losses' parameters, each its loss's
        value = getattr(args, name)
        if value is not None:
            if params.get("loss") != owner:
                raise ValueError(f"--{name} is the {name} of --loss {owner}")
            params[name] = value
    estimator = fastgd.GDClassifier if task == "classification" else fastgd.GDRegressor
    return estimator(**params)


def _scores(model, X, y, task, offset=None) -> dict:
    return _metrics(task, y, model.predict(X, **_offset_arg(offset)),
                    model.predict_proba(X) if _gives_proba(model) else None, model)


def _loss_of(model) -> losses.Loss:
    """The loss a model was fitted on (an estimator's, or a LinearModel's)."""
    return model.loss if isinstance(model.loss, losses.Loss) else model._fitted_loss()


def _gives_proba(model) -> bool:
    """A classifier whose loss has class probabilities (not the hinge losses)."""
    return getattr(model, "classes_", None) is not None and _loss_of(model).probabilities


def _metrics(task, y, predicted, probabilities, model) -> dict:
    """Regression: RMSE, MAE, R²; classification: accuracy, macro F1, log-loss (of the
    probabilities of the model's classes, where its loss has them)."""
    from sklearn import metrics

    if task == "regression":
        scores = {"rmse": float(np.sqrt(metrics.mean_squared_error(y, predicted))),
                  "mae": float(metrics.mean_absolute_error(y, predicted)),
                  "r2": float(metrics.r2_score(y, predicted)) if len(y) > 1 else None}
        loss = _loss_of(model)
        if loss.deviance_score:  # the mean Tweedie deviance of its power, and D^2
            scores["deviance"] = float(metrics.mean_tweedie_deviance(y, predicted,
                                                                     power=loss.power))
            scores["d2"] = (float(metrics.d2_tweedie_score(y, predicted, power=loss.power))
                            if len(y) > 1 else None)
        if loss.name == "quantile":  # the mean pinball loss of its quantile, and its D^2
            scores["pinball"] = float(metrics.mean_pinball_loss(y, predicted,
                                                                alpha=loss.quantile))
            scores["d2"] = (float(metrics.d2_pinball_score(y, predicted, alpha=loss.quantile))
                            if len(y) > 1 else None)
        return scores
    scores = {"accuracy": float(metrics.accuracy_score(y, predicted)),
              "f1_macro": float(metrics.f1_score(y, predicted, average="macro",
                                                 zero_division=0))}
    if probabilities is not None:
        seen = np.isin(y, model.classes_).all()  # else the log-loss is infinite
        scores["log_loss"] = (float(metrics.log_loss(y, probabilities, labels=model.classes_))
                              if seen else None)
    return scores


def _print_scores(scores, task, title):
    print(f"{title}:")
    for key, label in METRICS[task].items():
        if key not in scores:
            continue
        value = "undefined" if scores[key] is None else f"{scores[key]:.6g}"
        print(f"  {label:<11} {value}")


def _describe(model) -> str:
    """E.g. "GDRegressor(auto: newton, full batch)", "GDClassifier(adam, learning rate
    0.01, batch 64)": the solver (what "auto" chose, if it did), its rate if it is a
    first-order optimizer's, the batches."""
    solver = getattr(model, "solver_", None) or model.optimizer
    name = f"auto: {solver}" if model.optimizer == "auto" and solver != "auto" else solver
    batch = "full batch" if model.batch_size is None else f"batch {model.batch_size}"
    if solver in FULL_BATCH_SOLVERS:
        return f"{type(model).__name__}({name}, {batch})"
    rate = model.learning_rate
    rate = f"auto = {model.learning_rate_:.3g}" if rate == "auto" else f"{rate:g}"
    return f"{type(model).__name__}({name}, learning rate {rate}, {batch})"


def _frame(X, names):
    """X as a DataFrame with these column names (no copy), which fit records and predict
    checks, as scikit-learn does; sparse X (names None) as it is."""
    from fastgd._tables import pandas

    if names is None:
        return X
    return pandas().DataFrame(X, columns=list(names), copy=False)


def serve(args) -> None:
    from fastgd.serving import serve

    _check_model_file(args.model)
    serve(args.model, args.host, args.port, name=args.name, access_log=args.access_log,
          max_body_bytes=int(args.max_body_mb * (1 << 20)), reload_token=args.reload_token,
          poll_seconds=args.poll_seconds)


def export(args) -> None:
    from fastgd import onnx

    model = _load(args.model)
    _check_outputs({"-o": args.output}, [args.model])
    onnx.export(model, args.output, getattr(np, args.dtype))
    print(f"wrote {args.output}: the ONNX graph of {_describe(model)} (input X, "
          f"{args.dtype})")
    column = getattr(model, "offset_column_", None)
    if column is not None:  # the graph's input is X alone: its outputs leave it out
        print(f"note: the graph leaves out the offset, column {column!r} (fastgd train "
              f"--offset): add it to the predictions yourself, or for --loss poisson, "
              f"gamma or tweedie (predictions e^z) multiply them by e^offset")


def _load(path):
    _check_model_file(path)
    return fastgd.load(path)


def _check_model_file(path) -> None:
    if not os.path.exists(path):
        raise ValueError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"model file {path!r} is a directory")


def _check_outputs(outputs: dict, inputs) -> None:
    """Before any long work: each output (option -> path) can be written, is none of the
    input files, and no two options name the same file."""
    from fastgd._files import check_output_path

    given = {option: path for option, path in outputs.items() if path not in (None, "-")}
    for path in given.values():
        check_output_path(path, inputs)
    paths = [os.path.abspath(p) for p in given.values()]
    if len(set(paths)) < len(paths):
        raise ValueError(f"{' and '.join(given)} name the same file")


def _write_json(path, document):
    from fastgd._files import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2)
        f.write("\n")


def _names(text, option):
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"{option} takes column names separated by commas, got {text!r}")
    return list(dict.fromkeys(names))


def _in_options(message: str) -> str:
    """An estimator's message with its parameter names as the command line's options."""
    for name, option in OPTIONS.items():
        message = re.sub(rf"\b{name}\b", option, message)
    return re.sub(r"^(loss|alpha) must", r"--\1 must", message)


def _check_columns(name, features, targets, offset=None):
    """Features to train on, none of them the target or the offset (of file `name`)."""
    if not features:
        raise ValueError(f"{name} has no columns besides the target to use as features")
    for role, columns in (("the target", targets), ("the offset", _listed(offset))):
        both = [c for c in features if c in columns]
        if both:
            raise ValueError(f"column {both[0]!r} is both a feature and {role}")
    if offset in targets:
        raise ValueError(f"column {offset!r} is both the target and the offset")


def _listed(column) -> list:
    """An optional column (--offset's) as a list of none or one."""
    return [] if column is None else [column]


def _shorten(names, limit=8):
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


_batch_size = number("a whole number > 0 or full", lambda v: v > 0, int, {"full": None})
_seed = number("a whole number from 0 to 2**32 - 1", lambda v: 0 <= v < 2**32, int)
_rate = number("a number > 0 or auto", lambda v: 0 < v < math.inf, words={"auto": "auto"})
_penalty = number("a number >= 0", lambda v: 0 <= v < math.inf)
_fraction = number("a number in [0, 1)", lambda v: 0 <= v < 1)
_positive = number("a number > 0", lambda v: 0 < v < math.inf)
_port = number("a port number from 0 to 65535", lambda v: 0 <= v < 65536, int)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastgd", description=fastgd.__doc__, epilog=(
        "Start with `fastgd demo`; `fastgd COMMAND --help` shows each command with an "
        "example."))
    parser.add_argument("--version", action="version", version=f"fastgd {fastgd.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, run, help, description, example):
        p = commands.add_parser(name, help=help, description=description,
                                epilog=f"example:\n  {example}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(run=run)
        return p

    p = command("demo", demo, "what training is, then fastgd's speed on a million rows",
                "The seed walkthrough by hand (forward pass, loss, gradient, update), the "
                "learning rate's lesson, an animation of the line moving to the points and "
                "the loss curves (matplotlib), then the same loop on many rows against the "
                "NumPy reference.", "fastgd demo --out pictures")
    p.add_argument("--out", default="fastgd-demo", metavar="DIR",
                   help="directory for the pictures (default: %(default)s)")
    p.add_argument("--rows", type=positive_int, default=1_000_000,
                   help="rows of the speed problem")
    p.add_argument("--features", type=positive_int, default=100,
                   help="features of the speed problem")

    _train_options(command(
        "train", train, "train a model on a data file and report its test metrics",
        "Read DATA (.csv, .tsv, .parquet, .npy, .npz; sparse: .svm, .npz of "
        "scipy.sparse.save_npz), split off test rows, train "
        "GDRegressor or GDClassifier on the rest, print test metrics and save the model.",
        "fastgd train houses.csv --target price -o price.fastgd --plot loss.png"))

    p = command("predict", predict, "predict with a saved model",
                "Read DATA, take the columns the model was trained on, and write one "
                "prediction per row (in DATA's order) to OUT (.csv, .tsv, .parquet, .npy; "
                "- for stdout).", "fastgd predict price.fastgd new_houses.csv -o "
                "predictions.csv --keep id")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("-o", "--output", default="-", metavar="OUT",
                   help="default: CSV on stdout")
    p.add_argument("--keep", metavar="COLS", help="columns of DATA to copy into OUT (ids)")
    _reading_options(p)
    p.add_argument("--proba", action="store_true", help="classifiers: add each class's "
                   "probability")

    p = command("evaluate", evaluate, "a saved model's metrics on a data file",
                "Regression: RMSE, MAE, R². Classification: accuracy, macro F1, log-loss.",
                "fastgd evaluate price.fastgd houses_2025.csv --target price")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--target", metavar="COL", help="the true values' column (a table's)")
    p.add_argument("--target-file", metavar="FILE", help="the true values of a sparse .npz's "
                   "rows: one column")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    _reading_options(p)

    _serve_options(command(
        "serve", serve, "serve a saved model over HTTP",
        "Answer predictions over HTTP (the KServe V1 protocol: POST /v1/models/NAME:predict "
        "with {\"instances\": [[...], ...]}), report on /health and /metrics, and reload "
        "MODEL whenever the file is replaced. Needs fastgd[serve].",
        "fastgd serve price.fastgd --port 8000"))

    _export_options(command(
        "export", export, "a saved model as an ONNX graph",
        "Write MODEL as an ONNX graph for ONNX Runtime: input X (rows of the model's "
        "features), outputs 'variable' (regressors) or 'label' and 'probabilities' "
        "(classifiers). Needs fastgd[onnx].", "fastgd export price.fastgd -o price.onnx"))

    p = command("info", info, "how fastgd was built and how it runs here",
                "OpenMP on or off and its runtime, the SIMD build, bounds checking, default "
                "threads, NumPy's BLAS, versions.", "fastgd info")
    p = command("bench", bench.bench, "fastgd's speed on this machine, against NumPy",
                bench.__doc__.splitlines()[0], "fastgd bench --quick")
    bench.add_arguments(p)
    return parser


def _train_options(p) -> None:
    p.add_argument("data", metavar="DATA", help="the data file, with a header for CSV; or "
                   "sparse data: svmlight (.svm), a .npz of scipy.sparse.save_npz")
    p.add_argument("--target", metavar="COL", help="the column to predict (regression: "
                   "several, comma-separated); an svmlight file holds its own")
    p.add_argument("--target-file", metavar="FILE", help="the targets of a sparse .npz's "
                   "rows: a file of one column")
    p.add_argument("--features", metavar="COLS",
                   help="comma-separated feature columns (default: all other columns)")
    p.add_argument("--task", choices=TASKS, help="default: classification if the target "
                   "holds text, booleans or two distinct values, else regression")
    p.add_argument("--optimizer", default="auto", choices=optimizer_names(),
                   help="default: auto, the fastest to the optimum for the data")
    p.add_argument("--learning-rate", type=_rate, default="auto", metavar="RATE",
                   help="a number, or auto (default: worked out from the data)")
    p.add_argument("--batch-size", type=_batch_size, default=None, metavar="N",
                   help="rows per update (default: full, the whole training set)")
    p.add_argument("--epochs", type=positive_int, default=1000, metavar="N",
                   help="most epochs to run (default: %(default)s; stops sooner on "
                   "convergence)")
    p.add_argument("--early-stopping", action="store_true",
                   help="stop when the loss on held-out validation rows stops improving")
    p.add_argument("--validation-fraction", type=_fraction, metavar="F",
                   help="of the training rows, for --early-stopping (default: 0.1)")
    p.add_argument("--loss", choices=REGRESSION_LOSSES + CLASSIFICATION_LOSSES,
                   help=f"regression: {' or '.join(REGRESSION_LOSSES)} (default: "
                   f"{REGRESSION_LOSSES[0]}); classification: "
                   f"{' or '.join(CLASSIFICATION_LOSSES)}")
    p.add_argument("--alpha", type=_penalty, help="L2 penalty strength (default: 0 for "
                   "regression, 1e-3 for classification)")
    p.add_argument("--power", type=number("0 or a number >= 1", lambda v: v == 0 or 1 <= v
                                          < math.inf), metavar="P",
                   help="--loss tweedie: its power (default: 1.5; 1 Poisson, 2 Gamma)")
    p.add_argument("--quantile", type=number("a number in (0, 1)", lambda v: 0 < v < 1),
                   metavar="Q", help="--loss quantile: the quantile predicted (default: "
                   "0.5, the median)")
    p.add_argument("--offset", metavar="COL", help="regression: a column added to each "
                   "row's raw output, neither a feature nor a target (for --loss poisson, "
                   "gamma, tweedie: the log of the row's exposure); the model file keeps its "
                   "name for predict and evaluate")
    p.add_argument("--test-fraction", type=_fraction, default=0.2, metavar="F",
                   help="rows held out to test on (default: %(default)s)")
    p.add_argument("--seed", type=_seed, default=0, help="for the split and the shuffling "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="default: all cores")
    p.add_argument("--checkpoint", metavar="FILE", help="save the training state to FILE "
                   "every --checkpoint-every epochs (a long run can then be resumed)")
    p.add_argument("--checkpoint-every", type=positive_int, default=1, metavar="N",
                   help="(default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="go on from --checkpoint FILE, "
                   "with the same data and options: ends as if never stopped")
    _stream_option(p, "write them into memory-mapped rows on disk, and train on those")
    p.add_argument("--spill-dir", metavar="DIR", help="where --stream writes the rows "
                   "(default: beside the data file); removed after training")
    p.add_argument("-o", "--output", metavar="MODEL", help="save the model to this file")
    p.add_argument("--plot", metavar="CURVE.png", help="save the loss curve as a picture")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _missing_option(p)


def _serve_options(p) -> None:
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default: %(default)s; 0.0.0.0: all)")
    p.add_argument("--port", type=_port, default=8000, help="(default: %(default)s)")
    p.add_argument("--name", help="the model's name in the URLs (default: MODEL's file name "
                   "without its extension)")
    p.add_argument("--max-body-mb", type=_positive, default=32, metavar="MB",
                   help="the largest request body, in MiB (default: %(default)s)")
    p.add_argument("--reload-token", default=os.environ.get("FASTGD_RELOAD_TOKEN"),
                   metavar="TOKEN", help="POST .../reload then needs the header "
                   "'Authorization: Bearer TOKEN' (default: $FASTGD_RELOAD_TOKEN; unset: "
                   "anyone who reaches the server may reload)")
    p.add_argument("--poll-seconds", type=_positive, default=1.0, metavar="S",
                   help="how often to look for a new MODEL file (default: %(default)s)")
    p.add_argument("--access-log", action="store_true", help="log every request")


def _export_options(p) -> None:
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="of X and the outputs (default: %(default)s)")


def _stream_option(p, then: str) -> None:
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help=f"read DATA by chunks and {then} (default: for a file over a "
                   f"quarter of the memory available)")


def _reading_options(p) -> None:
    """How predict and evaluate read DATA: as the model takes it."""
    _missing_option(p)
    _stream_option(p, "predict chunk by chunk")
    p.add_argument("--offset", metavar="COL", help="the column of DATA added to each row's "
                   "raw output (default: the one the model was trained with, by fastgd train "
                   "--offset; give it where DATA names it otherwise, or for a model fitted in "
                   "Python with offset=)")


def _missing_option(p) -> None:
    p.add_argument("--missing", choices=MISSING, default="error",
                   help="an empty cell of a feature: error (default), or zero (a number "
                   "0, a category none of its levels)")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return run(f"fastgd {args.command}", args.run, args, words=_in_options)
