"""Progress of a fit on stderr, for GDRegressor(verbose=...)."""

from __future__ import annotations

import math
import sys
import time

class Progress:
    """Progress of a fit on stderr: verbose=1 once the fit has taken PROGRESS_AFTER seconds,
    verbose=2 from the first epoch; tqdm's bar when tqdm is installed, else a line an epoch.
    A bar is cleared when the fit ends and one line says how it ended (a bar frozen at
    "120/1000" read as a fit cut short when tol had stopped it)."""

    def __init__(self, verbose: int, max_epochs: int, n_rows: int):
        self.verbose, self.max_epochs, self.n_rows = verbose, max_epochs, n_rows
        self.start = time.perf_counter()
        self.bar = None
        self.shown = False

    def update(self, epoch: int, figures: dict):
        """After epoch `epoch` (0-based, this call's), with the history's figures of it: the
        loss, and the objective too when a penalty makes it differ."""
        if not self.verbose or (self.verbose == 1 and not self.shown
                                and time.perf_counter() - self.start < PROGRESS_AFTER):
            return
        loss, seconds = figures["loss"], figures["seconds"]
        speed = self.n_rows / seconds if seconds > 0 else math.inf
        objective = (f"{figures['objective']:.6g}" if figures["objective"] != loss else None)
        if not self.shown:
            self.shown = True
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=self.max_epochs, initial=epoch, unit="epoch",
                                file=sys.stderr, desc="fastgd", leave=False)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.6g}", **(
                {"objective": objective} if objective else {}), rows_per_s=f"{speed:.3g}")
        else:
            print(f"fastgd: epoch {epoch + 1}/{self.max_epochs}  loss {loss:.6g}  "
                  + (f"objective {objective}  " if objective else "")
                  + f"learning rate {figures['learning_rate']:.3g}  {speed:.3g} rows/s",
                  file=sys.stderr, flush=True)

    def close(self, epochs: int, loss: float | None):
        """The end of the fit, after `epochs` epochs (this call's) at final loss `loss`."""
        if self.bar is not None:
            self.bar.close()
        if self.shown and self.bar is not None:
            seconds = time.perf_counter() - self.start
            print(f"fastgd: {epochs} epoch{'s' if epochs != 1 else ''} in {seconds:.3g} s, "
                  f"final loss {loss:.6g}", file=sys.stderr, flush=True)


PROGRESS_AFTER = 2.0  # seconds: quicker fits stay quiet at verbose=1
