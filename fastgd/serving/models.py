"""The model a server serves: loaded from its file, replaced when the file is.

`ModelFile` holds the `Served` model of one file. `current` is read once by each request,
so a request that started with one model finishes with it, whatever happens to the file
meanwhile; a reload builds the new `Served` whole, then swaps the reference. Model files
are written atomically (a temporary file renamed over the old one), so a reader sees the
old file or the new one; a file copied in place can be caught half-written, which does not
load and is tried again when it changes again.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from fastgd import _persist
from fastgd._encoding import Encoding
from fastgd._version import __version__
from fastgd.model import LinearModel


@dataclass(frozen=True)
class Served:
    """A loaded model, its name, and what identifies the file it came from."""

    name: str
    model: LinearModel
    encoding: Encoding | None
    sha256: str
    loaded_at: float                     # time.time()
    trained_with: str                    # the fastgd version that saved it
    features: list | None = field(default=None)  # input names, for rows given by name
    offset: str | None = None  # the column added to the raw outputs (fastgd train --offset)

    @property
    def is_classifier(self) -> bool:
        return self.model.classes_ is not None

    def metadata(self, path) -> dict:
        """GET /v1/models/{name}: what the model is and which file it came from."""
        model = self.model
        return {
            "name": self.name,
            "ready": True,  # KServe's field: a server has a model from its start
            "kind": "classifier" if self.is_classifier else "regressor",
            "loss": model.loss.name,
            "n_features": len(self.features) if self.features else model.n_features_in_,
            "features": self.features,
            "offset": self.offset,
            "classes": None if model.classes_ is None else model.classes_.tolist(),
            "n_outputs": None if self.is_classifier else np.atleast_2d(model.coef_).shape[0],
            "file": os.fspath(path),
            "sha256": self.sha256,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
            "trained_with": self.trained_with,
            "fastgd_version": __version__,
        }


def load(path, name: str) -> Served:
    """The model in the file at `path`, read once (its hash and its model are of the same
    bytes); a ValueError naming the file if it is not a model fastgd can read."""
    with open(path, "rb") as f:
        data = f.read()
    model, saved = _persist.read(path, LinearModel.from_saved, data=data)
    encoding = Encoding.of(model)
    names = model.feature_names_in_
    features = (list(encoding.features) if encoding is not None
                else None if names is None else [str(name) for name in names])
    return Served(name, model, encoding, hashlib.sha256(data).hexdigest(), time.time(),
                  str(saved.fastgd_version), features, model.offset_column_)


class ModelFile:
    """The model of one file, reloaded when the file changes (see the module docstring)."""

    def __init__(self, path, name: str):
        self.path, self.name = os.fspath(path), name
        self._stamp = self._stat()
        self.current = load(self.path, name)
        self._lock = threading.Lock()

    def changed(self) -> bool:
        """Whether the file is another one than the last loaded or tried."""
        return self._stat() != self._stamp

    def reload(self) -> bool:
        """Load the file as it is now; True if it held another model (now served), False
        if the same bytes. The ValueError or OSError of a file that does not load leaves
        the model served as it was. Such a file is tried again when it changes (a chmod
        too), or at the next look after a passing failure (no file descriptors left)."""
        with self._lock:  # one reload at a time: the watcher's and a POST's
            stamp = self._stat()
            try:
                served = load(self.path, self.name)
            except Exception as error:
                if not isinstance(error, OSError) or isinstance(
                        error, (FileNotFoundError, PermissionError, IsADirectoryError)):
                    self._stamp = stamp
                raise
            self._stamp = stamp
            if served.sha256 == self.current.sha256:
                return False
            self.current = served
            return True

    def _stat(self):
        try:
            s = os.stat(self.path)
        except OSError:
            return None
        return s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns  # ctime: chmod too
