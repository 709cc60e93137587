"""The model file: fitted models written to a file and read back, without pickle.

This module knows the format only (it needs NumPy alone): the estimators save through it and
build themselves from what it reads, and so does fastgd.LinearModel, without scikit-learn.
The format is a ZIP archive whose entries are stored uncompressed (version 1; a checkpoint's
training state is version 2, a model with an offset column version 3, below; all are read):

``fastgd.json``
    ``{"format": "fastgd-model", "version": 1, "estimator": "GDRegressor",
    "fastgd_version": "...", "params": {...}, "values": {...}, "arrays": {...}}``:
    the estimator ("GDRegressor" or "GDClassifier"), its constructor parameters
    (``get_params()``; a mapping such as ``class_weight`` as ``{"pairs": [[label,
    weight], ...]}``, so that labels keep their types), the fitted attributes that are
    plain JSON values (``n_iter_``, ``history_``, a single-output regressor's
    ``intercept_``, ...), and for each fitted array ``{"dtype": "<f8", "shape": [d],
    "strings": false}`` ("strings": an array of Python strings, such as
    ``feature_names_in_`` or a classifier's string labels in an object array, stored as
    fixed-width unicode and read back as an object array).
``<name>.npy``
    Each fitted array (``coef_``, ``intercept_`` of several outputs, ``mean_``,
    ``classes_``, ...) in NumPy's ``.npy`` format, numbers or strings only: object arrays
    are neither written nor read.

A training checkpoint (``checkpoint=PATH``) is such a model file, the model as it stood at
the end of an epoch, with one more entry in ``fastgd.json``, ``"training": {"values":
{...}, "arrays": {...}}``, and its arrays as ``training.<name>.npy``: what
``fit(..., resume=PATH)`` needs to go on (fastgd/_checkpoint.py). ``load`` reads it as the
model it holds. Version 2 keeps the solver's state by name (``training.state.<slot>.npy``,
e.g. Adam's ``exp_avg``); version 1 kept two vectors ``m`` and ``v`` for every optimizer.

A file is written in the oldest version that holds it, so earlier fastgd reads what it can
read right. Version 3 adds ``offset_column_`` (the column ``fastgd train --offset`` added
to the raw outputs): a model with one is version 3, which an earlier fastgd refuses rather
than predict without the offset (its LinearModel, which ``fastgd serve`` loads, would
ignore the attribute).

A model is written to a temporary file in the same directory, flushed to disk, and renamed
over the target: a crash or a full disk leaves either the old file or the new one, never a
half-written one. Loading parses JSON and ``.npy`` data only (no pickle, no code), checks
every name, type, dtype and shape against what the estimator expects, and turns anything
else (an empty, truncated, foreign or hostile file) into a ValueError.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import zipfile

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from fastgd._files import atomic_write
from fastgd._version import __version__

FORMAT = "fastgd-model"
VERSION = 3
NEWER = {"offset_column_": 3}  # fitted attributes an earlier format lacks: their version
META = "fastgd.json"
MAX_META_BYTES = 1 << 20
NPY_HEADER_BYTES = 1 << 16  # a .npy header is far smaller; its data is checked exactly


class Saved(NamedTuple):
    """A model file's contents, as read: the estimator's name and constructor parameters,
    its fitted attributes (JSON values and arrays), and a checkpoint's training state
    (`training_values` None for a plain model file)."""

    kind: str
    params: dict
    values: dict
    arrays: dict
    training_values: dict | None
    training_arrays: dict | None
    version: int
    fastgd_version: str = ""  # of the fastgd that wrote it


def save(path, kind: str, params: dict, fitted: dict, training: dict | None = None) -> None:
    """Write a fitted model to `path` atomically (see the module docstring): its estimator's
    name, its constructor parameters, its fitted attributes (arrays or JSON values; None
    left out), and a checkpoint's `training` {"values": JSON values, "arrays": numeric
    arrays} if given."""
    # Callbacks are code, not data: they are not saved (a loaded model has none).
    params = {name: _param_to_json(value) for name, value in {**params, "callbacks": None}.items()}
    fitted = {name: value for name, value in fitted.items() if value is not None}
    values = {name: value for name, value in fitted.items()
              if not isinstance(value, np.ndarray)}
    objects = {name for name, value in fitted.items()  # e.g. feature_names_in_
               if isinstance(value, np.ndarray) and value.dtype.hasobject}
    arrays = {name: _storable(name, value) for name, value in fitted.items()
              if isinstance(value, np.ndarray)}
    version = max([2 if training is not None else 1]  # 1 where it suffices: earlier
                  + [NEWER[name] for name in fitted if name in NEWER])  # fastgd reads it
    document = {
        "format": FORMAT, "version": version,
        "estimator": kind,
        "fastgd_version": __version__, "params": params, "values": values,
        "arrays": {name: _describe(a, name in objects) for name, a in arrays.items()}}
    if training is not None:
        document["training"] = {"values": training["values"], "arrays": {
            name: _describe(a) for name, a in training["arrays"].items()}}
        arrays.update({f"training.{name}": a for name, a in training["arrays"].items()})
    try:
        meta = json.dumps(document, allow_nan=False, default=_json_number)
    except (TypeError, ValueError) as error:
        bad = [name for name, value in params.items() if not _is_json(value)]
        raise ValueError(f"cannot save this model: {error}; parameters must be None, numbers "
                         f"or strings to be saved (set {', '.join(bad) or 'them'} so)"
                         ) from None
    with atomic_write(path) as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(META, meta)
            for name, a in arrays.items():
                with archive.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, a, allow_pickle=False)


def read(path, build: Callable[[Saved], object], data: bytes | None = None):
    """(build(the file's Saved contents), the Saved contents) for a file ``save`` wrote: a
    ValueError naming the file for anything else, `build`'s refusals of its contents
    included (an estimator or a fastgd.LinearModel checks what it is given). `data`: the
    file's bytes, already read (a server hashes the same bytes it loads)."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path if data is None else io.BytesIO(data)) as archive:
            saved = _contents(archive)
        return build(saved), saved
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # the file cannot be opened: not a question of its contents
    except (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile,
            NotImplementedError, RuntimeError, UnicodeDecodeError, ArithmeticError,
            MemoryError, AttributeError) as error:
        raise ValueError(f"{path} is not a fastgd model this version can read: {error}"
                         ) from None


def _contents(archive: zipfile.ZipFile) -> Saved:
    if any(info.compress_type != zipfile.ZIP_STORED for info in archive.infolist()):
        raise ValueError("it has compressed entries")
    meta = _read_meta(archive)
    params = {name: _param_from_json(value)
              for name, value in _checked(meta, "params", dict).items()}
    values = _checked(meta, "values", dict)
    declared = _checked(meta, "arrays", dict)
    training = meta.get("training")
    if training is not None:
        training_values = _checked(training, "values", dict)
        training_declared = _checked(training, "arrays", dict)
    else:
        training_values, training_declared = None, {}
    names = set(archive.namelist()) - {META}
    if names != ({f"{name}.npy" for name in declared}
                 | {f"training.{name}.npy" for name in training_declared}):
        raise ValueError("its entries do not match its table of contents")
    arrays = {name: _read_array(archive, name, spec) for name, spec in declared.items()}
    training_arrays = ({name: _read_array(archive, f"training.{name}", spec)
                        for name, spec in training_declared.items()} if training else None)
    return Saved(meta["estimator"], params, values, arrays, training_values, training_arrays,
                 meta["version"], str(meta.get("fastgd_version", "")))


def check_array(estimator, name: str, dtype, shape: tuple, *, optional=False) -> None:
    """A loaded attribute is an array of this dtype kind and shape (None if optional)."""
    value = getattr(estimator, name, None)
    if value is None and optional:
        setattr(estimator, name, None)
        return
    if (not isinstance(value, np.ndarray) or value.shape != shape
            or not np.issubdtype(value.dtype, dtype)):
        raise ValueError(f"{name} is not an array of shape {shape}")
    if np.issubdtype(dtype, np.floating) and not np.isfinite(value).all():
        raise ValueError(f"{name} holds non-finite values")


def check_value(estimator, name: str, kind, *, minimum=None) -> None:
    """A loaded attribute is a number of this kind (numbers.Integral or numbers.Real)."""
    value = getattr(estimator, name, None)
    if (not isinstance(value, kind) or isinstance(value, bool)
            or not math.isfinite(value) or (minimum is not None and value < minimum)):
        raise ValueError(f"{name} is missing or not a valid number")


def check_history(estimator, keys: tuple, length: int, optional: tuple = ()) -> None:
    history = getattr(estimator, "history_", None)
    if (not isinstance(history, dict) or not set(keys) <= set(history) <= {*keys, *optional}
            or any(not isinstance(v, list) or len(v) != length for v in history.values())
            or not all(isinstance(v, list) and all(isinstance(x, numbers.Real)
                                                   and not isinstance(x, bool) for x in v)
                       for v in history.values())):
        raise ValueError("history_ is malformed")


def _read_meta(archive: zipfile.ZipFile) -> dict:
    info = archive.getinfo(META)  # KeyError: no table of contents
    if info.compress_type != zipfile.ZIP_STORED or info.file_size > MAX_META_BYTES:
        raise ValueError(f"{META} is too large")
    meta = json.loads(archive.read(META).decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("it is not marked as a fastgd model")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError("its format version is missing")
    if version > VERSION:
        raise ValueError(f"it is in format version {version}, written by a newer fastgd "
                         f"({meta.get('fastgd_version')!s}); this one reads version {VERSION}")
    if version < 1:
        raise ValueError(f"unknown format version {version}")
    if not isinstance(meta.get("estimator"), str):
        raise ValueError("it does not name its estimator")
    return meta


def _checked(meta: dict, key: str, kind: type):
    value = meta.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"its {key!r} entry is missing or not a {kind.__name__}")
    return value


def _read_array(archive: zipfile.ZipFile, name: str, spec) -> np.ndarray:
    if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list):
        raise ValueError(f"the description of {name!r} is malformed")
    dtype = np.dtype(spec.get("dtype"))
    shape = tuple(spec["shape"])
    if dtype.hasobject or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ValueError(f"the description of {name!r} is malformed")
    expected = math.prod(shape) * dtype.itemsize
    info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:  # stored: memory never exceeds the file
        raise ValueError(f"{name!r} is compressed")
    if not expected <= info.file_size <= expected + NPY_HEADER_BYTES:
        raise ValueError(f"{name!r} does not have the size its description gives")
    data = archive.read(info)  # whole, so that ZIP's CRC check runs (BadZipFile)
    array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    if array.dtype != dtype or array.shape != shape:
        raise ValueError(f"{name!r} does not match its description")
    if spec.get("strings") is True and dtype.kind == "U":
        return array.astype(object)  # as scikit-learn keeps feature_names_in_
    return array


def _describe(array: np.ndarray, strings: bool = False) -> dict:
    return {"dtype": array.dtype.str, "shape": list(array.shape), "strings": strings}


def _storable(name: str, value) -> np.ndarray:
    """An attribute as an array of numbers or fixed-width strings (never objects)."""
    array = np.asarray(value)
    if array.dtype.hasobject:
        if not all(isinstance(x, str) for x in array.flat):
            raise ValueError(f"cannot save this model: {name} holds Python objects")
        array = array.astype(str)
    return array


def _param_to_json(value):
    """A dict parameter (class_weight) as {"pairs": [[key, value], ...]}: JSON's object
    keys are strings only, and a class label 0 must come back as 0, not "0"."""
    if isinstance(value, dict):
        return {"pairs": [[key, item] for key, item in value.items()]}
    if isinstance(value, os.PathLike):  # checkpoint=Path(...)
        return os.fspath(value)
    return value


def _param_from_json(value):
    if isinstance(value, dict):
        pairs = value.get("pairs")
        if set(value) != {"pairs"} or not isinstance(pairs, list) or not all(
                isinstance(pair, list) and len(pair) == 2 and not isinstance(pair[0], (list, dict))
                for pair in pairs):
            raise ValueError("a parameter is a malformed mapping")
        return {key: item for key, item in pairs}
    return value


def _is_json(value) -> bool:
    try:
        json.dumps(value, allow_nan=False, default=_json_number)
    except (TypeError, ValueError):
        return False
    return True


def _json_number(value):
    """NumPy scalars among the parameters (e.g. np.float64(0.1)) as JSON numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not a JSON value")
