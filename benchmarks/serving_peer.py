"""The peer of benchmarks/serving.py: the minimal FastAPI endpoint a user writes by hand
around a scikit-learn model (here a pickled LinearRegression), served by uvicorn as
`fastgd serve` is (one worker, access log off).

    python benchmarks/serving_peer.py MODEL.pkl --port 8001
"""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Instances(BaseModel):
    instances: list[list[float]]


def app_for(path) -> FastAPI:
    with open(path, "rb") as f:
        model = pickle.load(f)  # the benchmark's own file
    app = FastAPI()

    @app.post("/predict")
    def predict(body: Instances):
        return {"predictions": model.predict(np.asarray(body.instances)).tolist()}

    @app.get("/health")
    def health():
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(app_for(args.model), host="127.0.0.1", port=args.port, access_log=False,
                log_level="warning")
