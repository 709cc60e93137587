"""Timing in one process: medians of blocks of runs, ratios of rounds (fastgd bench, the
demo and benchmarks/)."""

from __future__ import annotations

import time

import numpy as np

ROUNDS = 5


class Timings:
    """Seconds per call of each candidate, one median per round.

    A ratio is the median over rounds of the two candidates' ratio within each round (when
    both ran in the same rounds): a slow phase of the machine then slows both sides of it.
    """

    def __init__(self, rounds: dict):
        self.rounds = rounds

    def update(self, other: Timings):
        self.rounds.update(other.rounds)

    def __getitem__(self, name) -> float:
        return float(np.median(self.rounds[name]))

    def ratio(self, a, b) -> float:
        ra, rb = self.rounds[a], self.rounds[b]
        if len(ra) != len(rb):
            return self[a] / self[b]
        return float(np.median([x / y for x, y in zip(ra, rb, strict=True)]))

    def best_ratio(self, a, b) -> float:
        """Ratio of the two fastest rounds: what the code does when the machine is quiet
        (noise here only ever adds time)."""
        return min(self.rounds[a]) / min(self.rounds[b])


def median_seconds(fn, repeats: int) -> float:
    """The median of `repeats` timed calls of fn, after one call to warm up (page X in,
    start the thread pools)."""
    return block_medians({"fn": fn}, repeats, rounds=1, warmup=0.0)["fn"]


def block_medians(candidates: dict, repeats: int, rounds: int = ROUNDS,
                  warmup: float = 0.2) -> Timings:
    """Each callable's median time in each of `rounds` rounds of `repeats` runs.

    Each candidate runs in a block after `warmup` seconds of untimed calls: right after an
    OpenBLAS call its threads keep spinning on the cores for a while (and OpenMP's after
    ours), and an idle virtual CPU comes back slowly; both slowed the first calls of a
    block by up to 2 x here, which a training loop never sees.
    """
    times = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            while time.perf_counter() - start < warmup:
                fn()
            block = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                block.append(time.perf_counter() - start)
            times[name].append(float(np.median(block)))
    return Timings(times)
