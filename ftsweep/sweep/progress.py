"""The live progress display of a sweep: a table of trials in a terminal, lines in a log.

Ray pickles a sweep's callbacks with its state and unpickles them on resume, so the callback
holds nothing itself: it forwards events to whichever display is open in this process.
"""

from __future__ import annotations

import time

from ray import tune

_current: SweepProgress | None = None
FINAL_STATES = ("DONE", "ERROR", "RECORDED", "STOPPED", "FAILED", "SKIPPED")


class SweepProgress:
    def __init__(self, specs, console=None, resumed_from: int = 0):
        from rich.console import Console

        self.console = console or Console()
        self.rows = {s.trial_id: {"name": s.run_name, "status": "PENDING"} for s in specs}
        self.started = time.monotonic()
        self.interrupted = False
        self._live = None
        if resumed_from:
            self.note(f"{resumed_from} run(s) left RUNNING by an earlier sweep were marked KILLED")

    def stopped_trials(self) -> set[str]:
        """Trials the scheduler stopped early (they ended without their final report)."""
        return {trial_id for trial_id, row in self.rows.items() if row["status"] == "STOPPED"}

    # -- display ---------------------------------------------------------------------------
    def note(self, message: str) -> None:
        self.console.print(f"[dim]{message}[/dim]")

    def _table(self):
        from rich.table import Table

        done = sum(r["status"] in FINAL_STATES for r in self.rows.values())
        elapsed = time.monotonic() - self.started
        table = Table(
            title=f"ftsweep: {done}/{len(self.rows)} trials, {elapsed:,.0f} s", title_justify="left"
        )
        for column in ("trial", "run", "status", "step", "train loss", "quality", "wall s"):
            table.add_column(
                column,
                justify="right"
                if column in ("step", "train loss", "quality", "wall s")
                else "left",
            )
        for trial_id, row in self.rows.items():
            table.add_row(
                trial_id,
                row["name"],
                row["status"],
                _fmt(row.get("step"), "{:.0f}"),
                _fmt(row.get("train_loss"), "{:.3f}"),
                _fmt(row.get("quality"), "{:.3f}"),
                _fmt(row.get("wall_time_s"), "{:.0f}"),
            )
        return table

    def update(self, trial_id: str, **fields) -> None:
        before = self._set(trial_id, fields)
        row = self.rows[trial_id]
        if self._live is not None:
            self._live.update(self._table())
        elif row["status"] != before:
            # Not a terminal: one line per change of state, readable in a CI log.
            extra = ""
            if row["status"] in ("DONE", "RECORDED") and row.get("quality") is not None:
                extra = f" quality={row['quality']:.3f} wall={row.get('wall_time_s', 0):.0f}s"
            self.console.print(
                f"[{time.monotonic() - self.started:6.0f}s] {trial_id} ({row['name']}): {row['status']}{extra}"
            )

    def update_all(self, updates: dict[str, dict]) -> None:
        """Many trials at once (those already recorded): in a terminal one redraw, not one a
        trial (each redraw builds the whole table)."""
        if self._live is None:
            for trial_id, fields in updates.items():
                self.update(trial_id, **fields)
            return
        for trial_id, fields in updates.items():
            self._set(trial_id, fields)
        self._live.update(self._table())

    def _set(self, trial_id: str, fields: dict) -> str:
        """Update a row; returns its status before."""
        row = self.rows.setdefault(trial_id, {"name": trial_id, "status": "PENDING"})
        before = row["status"]
        row.update({k: v for k, v in fields.items() if v is not None})
        return before

    def __enter__(self) -> SweepProgress:
        global _current
        _current = self
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self._table(), console=self.console, refresh_per_second=2)
            self._live.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        global _current
        if exc_type is KeyboardInterrupt:
            self.interrupted = True
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
        _current = None


def _fmt(value, pattern: str) -> str:
    return "" if value is None else pattern.format(value)


def _trial_id(trial) -> str:
    # Trials are named by their ftsweep trial id (the sweep's trial_name_creator).
    return str(trial)


class ProgressCallback(tune.Callback):
    """Forwards Ray Tune's trial events to the open display."""

    def on_trial_start(self, iteration, trials, trial, **info):
        if _current:
            _current.update(_trial_id(trial), status="RUNNING")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if _current:
            status = "RUNNING"
            if result.get("already_recorded"):
                status = "RECORDED"
            elif result.get("failed"):
                status = "FAILED"
            elif result.get("skipped"):
                status = "SKIPPED"
            _current.update(
                _trial_id(trial),
                status=status,
                step=result.get("step"),
                train_loss=result.get("train_loss"),
                quality=result.get("quality"),
                wall_time_s=result.get("wall_time_s"),
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
        if _current:
            row = _current.rows.get(_trial_id(trial), {})
            if row.get("status") in ("RECORDED", "FAILED", "SKIPPED"):
                return
            # A trial that ends without its final metrics was stopped early by the scheduler.
            _current.update(
                _trial_id(trial), status="DONE" if row.get("quality") is not None else "STOPPED"
            )

    def on_trial_error(self, iteration, trials, trial, **info):
        if _current:
            _current.update(_trial_id(trial), status="ERROR")
