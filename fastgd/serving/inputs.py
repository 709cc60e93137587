"""A prediction request's body, checked, as the rows a model takes.

JSON (``application/json``, the KServe V1 body): ``{"instances": [...], "proba": false}``,
each instance a list of the model's features' values in order, or an object of them by
name (a model fitted on a table: its ``feature_names_in_``, or the input columns of a model
the command line trained on text columns, which are encoded here as ``fastgd predict``
encodes them). CSV (``text/csv``): one row per line, with a header of feature names (a
first line none of whose cells is a number) or none. A model trained with an offset column
(``fastgd train --offset COLUMN``) takes its rows by name only, that column among them: its
value is added to the row's raw output, as ``fastgd predict`` adds it.

Anything else is a `BadRequest` naming the problem and where it is: a body that is not
UTF-8 or not JSON, another shape of document, no or empty instances, rows of other lengths,
unknown or missing features, values that are not numbers (booleans included; for an
encoded column, values that are not text or a number, and missing ones: a level never
seen in training encodes as none), NaN and infinities.
"""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np

from fastgd._spill import NA_VALUES
from fastgd.serving.models import Served

try:
    import orjson
except ImportError:
    orjson = None

JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv",)
BODY_KEYS = ("instances", "proba")
MISSING_TEXT = frozenset(NA_VALUES)  # a CSV cell that pandas reads as missing
NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf(inity)?|nan)",
                    re.IGNORECASE | re.ASCII)


class BadRequest(Exception):
    """What is wrong with a request, and the HTTP status that says so."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str:
    """The body's kind ("json" or "csv") from its Content-Type (none: JSON), or a 415."""
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind in JSON_TYPES:
        return "json"
    if kind in CSV_TYPES:
        return "csv"
    raise BadRequest(f"Content-Type {kind!r} is not served: send application/json "
                     f"({{\"instances\": [...]}}) or text/csv", 415)


def rows_of(served: Served, body: bytes, kind: str):
    """(the model's input X for the body's rows, their offsets (None for a model without an
    offset column), whether the body asks for probabilities)."""
    if kind == "csv":
        columns = served.features if served.offset is None else [*served.features,
                                                                  served.offset]
        (names, rows), proba = _csv(_text(body), columns), False
    else:
        names, rows, proba = _json(body)
    # what only a Python scan of the values finds, looked for where the bytes may hold it:
    # booleans among JSON numbers (NumPy reads them as 1 and 0), numbers float() reads and
    # a CSV file would not hold (1_000, other scripts' digits)
    scan = (b"true" in body or b"false" in body if kind == "json"
            else b"_" in body or not body.isascii())
    offset = None
    if served.offset is not None:
        names, rows, offset = _offset(served.offset, names, rows, kind == "csv", scan)
    if names is not None:
        rows = _by_name(served, names, rows)
    if served.encoding is not None:
        _check_lengths(rows, len(served.features),
                       "instance {i} has {n} values; the model takes {length}")
        return _encoded(served, rows, kind == "csv", scan), offset, proba
    return _numbers(rows, served.features or served.model.n_features_in_, kind == "csv",
                    scan), offset, proba


def _offset(column: str, names, rows: list, text: bool, scan: bool):
    """(the other names, the rows without the offset column, its values): a model with an
    offset column takes rows by name, that column among them."""
    if names is None or column not in names:
        raise BadRequest(f"the model adds column {column!r} to each row's raw output (an "
                         f"offset, fastgd train --offset): send the instances by name (JSON "
                         f"objects, or CSV with a header) with {column!r} among them")
    if names.count(column) > 1:
        raise BadRequest(f"the CSV header names {column!r} twice")
    j = names.index(column)
    values = _numbers([[row[j]] for row in rows], [column], text, scan)[:, 0]
    return ([name for name in names if name != column],
            [row[:j] + row[j + 1:] for row in rows], values)


def _json(body: bytes):
    """(feature names or None, rows, proba) of a JSON body."""
    document = _parse_json(body)
    if not isinstance(document, dict):
        raise BadRequest('the body must be a JSON object: {"instances": [...]}')
    unknown = [key for key in document if key not in BODY_KEYS]
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} in the body (it takes "
                         f"{', '.join(map(repr, BODY_KEYS))})")
    instances, proba = document.get("instances"), document.get("proba", False)
    if not isinstance(proba, bool):
        raise BadRequest('"proba" must be true or false')
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list of rows: lists of values, or '
                         'objects of values by feature name')
    if all(isinstance(row, dict) for row in instances):
        names = list(instances[0])
        for i, row in enumerate(instances):
            if row.keys() != instances[0].keys():
                other = sorted(set(row) ^ set(names), key=str)[0]
                raise BadRequest(f"instance {i} {'has' if other in row else 'lacks'} feature "
                                 f"{other!r}, unlike instance 0")
        return names, [[row[name] for name in names] for row in instances], proba
    if all(isinstance(row, list) for row in instances):
        return None, instances, proba
    raise BadRequest('"instances" must all be lists of values, or all objects of values by '
                     'feature name')


def _parse_json(body: bytes):
    """The body's JSON document: by orjson where installed (ten times faster), else, or
    where orjson refuses it, by the standard library, whose messages say why."""
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # json's message (NaN: ours), or what only json reads (integers > 2**64)
    try:
        return json.loads(_text(body), parse_constant=_non_finite)
    except (json.JSONDecodeError, ValueError) as error:  # ValueError: a 5,000-digit integer
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise BadRequest("the body's JSON is nested too deeply") from None


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8 text (byte {error.start})") from None


def _non_finite(constant: str):
    raise BadRequest(f"the body holds {constant}: values must be finite numbers")


def _csv(text: str, features):
    """(the header's names or None, rows of strings) of a CSV body. The first line is a
    header if its cells are the model's feature names, or if none of them is a number."""
    try:
        rows = [row for row in csv.reader(io.StringIO(text.removeprefix("\ufeff"))) if row]
    except csv.Error as error:
        raise BadRequest(f"the CSV body does not parse: {error}") from None
    if not rows:
        raise BadRequest("the CSV body has no rows")
    header = ((features is not None and sorted(rows[0]) == sorted(features))
              or not any(_is_number(cell) for cell in rows[0]))
    names, rows = (rows[0], rows[1:]) if header else (None, rows)
    if not rows:
        raise BadRequest("the CSV body has a header but no rows")
    _check_lengths(rows, len(rows[0]) if names is None else len(names),
                   "CSV row {i} has {n} cells, unlike the first ({length})")
    return names, rows


def _is_number(cell: str) -> bool:
    """A number as a CSV file writes one (Python's float() also takes 1_000 and other
    scripts' digits)."""
    return NUMBER.fullmatch(cell.strip()) is not None


def _by_name(served: Served, names: list, rows: list) -> list:
    """The rows' values in the order of the model's features."""
    if served.features is None:
        raise BadRequest(f"the model was trained without feature names: send each instance "
                         f"as a list of its {served.model.n_features_in_} values")
    missing = [name for name in served.features if name not in names]
    unknown = [name for name in names if name not in served.features]
    if missing or unknown:
        problem = (f"lacks feature {missing[0]!r}" if missing
                   else f"has unknown feature {unknown[0]!r}")
        raise BadRequest(f"the request {problem}; the model's features are "
                         f"{_shorten(served.features)}")
    if len(names) != len(set(names)):
        raise BadRequest("the CSV header names a feature twice")
    order = [names.index(name) for name in served.features]
    return [[row[j] for j in order] for row in rows]


def _check_lengths(rows: list, length: int, message: str) -> None:
    """A BadRequest of `message` (formatted with i, n and length) for the first row whose
    length n is not `length`."""
    for i, values in enumerate(rows):
        if len(values) != length:
            raise BadRequest(message.format(i=i, n=len(values), length=length))


def _numbers(rows: list, features, text: bool, scan: bool = True) -> np.ndarray:
    """The rows as a float64 matrix of finite numbers, one column per feature (`features`:
    their names, or their number); `text`: CSV cells, numbers written as text; `scan`:
    check each value's type in Python, not only the array's."""
    names = features if isinstance(features, list) else None
    d = len(features) if names else features
    try:
        X = np.array(rows)
    except ValueError:
        X = None  # rows of different lengths, or values that are lists
    if X is None or X.ndim != 2:
        lengths = sorted({len(row) if isinstance(row, list) else -1 for row in rows})
        raise BadRequest("instances must be rows of single values, all of one length, got "
                         + (f"rows of lengths {', '.join(map(str, lengths))}"
                            if len(lengths) > 1 else "nested values"))
    if X.shape[1] != d:
        raise BadRequest(f"instances have {X.shape[1]} values; the model takes {d} features")
    where = (lambda j: repr(names[j])) if names else str
    if text:  # CSV cells: a cell that does not parse is found only then
        if scan:
            _check_values(rows, where, _is_number)
        try:
            X = X.astype(np.float64)
        except ValueError:
            _check_values(rows, where, _is_number)
            raise BadRequest("a CSV cell is not a number") from None
    elif scan or X.dtype.kind not in "iuf":
        _check_values(rows, where, lambda value: isinstance(value, (int, float))
                      and not isinstance(value, bool))
    try:
        X = X.astype(np.float64)
    except (OverflowError, ValueError):
        raise BadRequest("values must be numbers within float64's range") from None
    if not np.isfinite(X).all():
        i, j = np.argwhere(~np.isfinite(X))[0]
        raise BadRequest(f"instance {i}, feature {where(j)}: {X[i, j]} is not a finite number")
    return X


def _check_values(rows, where, ok) -> None:
    """A BadRequest naming the first value that is not ok(value)."""
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if not ok(value):
                shown = repr(value) if isinstance(value, str) else json.dumps(value)
                raise BadRequest(f"instance {i}, feature {where(j)}: {shown} is not a number")


def _encoded(served: Served, rows: list, text: bool, scan: bool):
    """The rows of a model trained on text columns, encoded as `fastgd predict` does: its
    numeric columns checked as numbers, its text columns as the text they hold."""
    from fastgd._tables import pandas

    features, levels = served.features, served.encoding.levels
    numeric = [j for j, name in enumerate(features) if name not in levels]
    encoded = [j for j, name in enumerate(features) if name in levels]
    for row in rows if text else ():  # a CSV's missing text, as pandas reads it: NaN
        for j in encoded:
            if row[j] in MISSING_TEXT:
                row[j] = None
    for i, row in enumerate(rows):
        for j in encoded:
            value = row[j]
            if not isinstance(value, (str, int, float, type(None))):
                raise BadRequest(f"instance {i}, feature {features[j]!r}: {json.dumps(value)} "
                                 f"is not a level (text)")
    frame = pandas().DataFrame(rows, columns=features, dtype=object)
    frame.attrs["name"] = "the request"
    if numeric:
        values = _numbers([[row[j] for j in numeric] for row in rows],
                          [features[j] for j in numeric], text, scan)
        for k, j in enumerate(numeric):
            frame[features[j]] = values[:, k]
    try:
        return served.encoding.encode(frame, hint="send a value of each feature")
    except (ValueError, TypeError) as error:
        raise BadRequest(str(error)) from None


def _shorten(names, limit=8) -> str:
    shown = ", ".join(map(repr, names[:limit]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
