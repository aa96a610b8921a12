"""The bench's progress display: one bar over the env steps of the whole grid, fed by the runs'
own files (progress.csv, status.json) each time a backend polls, with the run counts and the ETA."""

from __future__ import annotations

import contextlib
import sys
import time

from .grid import Outcome, Run, steps_done
from .runfolder import STATUS_FILE, read_status

class GridWatch:
    """One progress bar over the env steps of the whole grid, fed by the runs' files at every
    `refresh`, with run counts (done / running / queued / failed) and the ETA."""

    def __init__(self, runs: list[Run], outcomes: dict[str, Outcome], show: bool):
        self.runs, self.outcomes = runs, outcomes
        self.running: set[str] = set()
        self.since = time.time()
        self.total = sum(r.config.steps for r in runs)
        self.bar = None
        if show:
            from tqdm import tqdm
            done = sum(steps_done(r) for r in runs)
            self.bar = tqdm(total=self.total, initial=done, unit="step", desc="bench", dynamic_ncols=True,
                            smoothing=0.1, mininterval=1.0)
            self._postfix()

    def started(self, run: Run, queued: bool = False) -> None:
        """A run handed to a worker; `queued`: to a scheduler (Ray), which starts it later."""
        if not queued:
            self.running.add(run.name)
        self._postfix()

    def finished(self, run: Run, outcome: Outcome) -> None:
        self.running.discard(run.name)
        self.outcomes[run.name] = outcome
        if outcome.state == "failed":
            self.say(f"failed: {run.name}: {outcome.reason}")
        self._postfix()

    def refresh(self) -> None:
        if self.bar is None:
            return
        done = sum(steps_done(r) for r in self.runs)
        if done >= self.bar.n:
            self.bar.update(done - self.bar.n)
        else:  # a resumed run cut its CSV back to its checkpoint
            self.bar.n = done
            self.bar.refresh()
        for run in self.runs:  # runs a scheduler has started: their status.json says so, freshly
            if self.outcomes[run.name].state == "queued" and run.name not in self.running:
                with contextlib.suppress(OSError):
                    fresh = (run.folder / STATUS_FILE).stat().st_mtime >= self.since
                    if fresh and (read_status(run.folder) or {}).get("state") == "running":
                        self.running.add(run.name)
        self._postfix()

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.refresh()
            self.bar.close()

    def _postfix(self) -> None:
        if self.bar is None:
            return
        states = [o.state for o in self.outcomes.values()]
        queued = states.count("queued") - len(self.running)
        self.bar.set_postfix_str(f"runs: {states.count('done')} done, {len(self.running)} running, "
                                 f"{max(queued, 0)} queued, {states.count('failed')} failed", refresh=False)
