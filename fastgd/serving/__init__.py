"""`fastgd serve`: a saved model over HTTP, the KServe / TF-Serving V1 protocol.

- ``POST /v1/models/{name}:predict`` (and ``POST /predict``): ``{"instances": [[...], ...]}``
  (rows), or ``{"instances": [{"feature": value, ...}, ...]}`` (by name, for a model
  fitted on a table), or a ``text/csv`` body, gives ``{"predictions": [...]}``; a
  classifier adds ``"probabilities"`` (columns in the order of its classes) for
  ``?proba=true`` or ``"proba": true`` in the body. A model trained with ``fastgd train
  --offset COLUMN`` takes rows by name only, that column among them (inputs.py).
- ``GET /v1/models/{name}`` and ``GET /health``: the model's kind, features, classes, the
  file's sha256, when it was loaded, fastgd's version.
- ``GET /metrics``: Prometheus' text format.
- ``POST /v1/models/{name}/reload``: load the file now (guarded by ``--reload-token``).

The model file is watched: when it is replaced (``fastgd train -o``, ``model.save``),
the new model answers the requests that start after it has loaded, and those in flight
finish with the old one. A replacement that does not load leaves the old model serving.

`models.py` holds the model and its reloads, `inputs.py` turns a body into rows, `app.py`
is the application. Needs the extra ``fastgd[serve]`` (starlette, uvicorn,
prometheus-client); `import fastgd` does not import it.
"""

from __future__ import annotations

import contextlib
import signal
import socket

from fastgd.serving.app import MAX_BODY_BYTES, POLL_SECONDS, create_app, require


def serve(path, host: str = "127.0.0.1", port: int = 8000, *, access_log: bool = False,
          **options) -> None:
    """Serve the model file at `path` until interrupted (create_app's `options`). A port
    that cannot be listened on is an OSError saying so, before anything serves."""
    require("uvicorn")
    import uvicorn

    app = create_app(path, **options)
    listening = _listen(host, port)
    served = app.state.models.current
    port = listening.getsockname()[1]  # port 0: the one the system chose
    address = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    print(f"serving {served.name!r} ({served.metadata(path)['kind']}, sha256 "
          f"{served.sha256[:12]}) at http://{address}:{port}/v1/models/{served.name}:predict",
          flush=True)
    config = uvicorn.Config(app, host=host, port=port, access_log=access_log,
                            log_level="info")
    # uvicorn shuts down gracefully on Ctrl-C or SIGTERM (requests in flight finish), then
    # raises the signal again: both end here, for exit status 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listening])


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), as uvicorn would bind it."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listening = socket.socket(family, kind)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
    except OSError as error:
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return listening


__all__ = ["MAX_BODY_BYTES", "POLL_SECONDS", "create_app", "serve"]
