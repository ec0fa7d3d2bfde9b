"""Build progress for people: a live rich display on a terminal, plain lines elsewhere."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from buildprint.builder.outcome import Outcome
from buildprint.cli.render import duration, outcome_why, style, why
from buildprint.plan.decision import Decision
from buildprint.states import OUTCOMES

__all__ = ["BuildProgress"]

#: Mark printed before a finished package.
_MARK = {"reused": "✓", "fetched": "✓", "built": "✓", "failed": "✗"}


@dataclass
class _Running:
    """A package between its ``start`` and ``done`` events."""

    decision: Decision
    started: float
    spinner: Spinner


@dataclass(frozen=True)
class _Snapshot:
    """The display state copied under the lock, rendered outside it."""

    total: int
    counts: dict[str, int]
    running: list[_Running]
    now: float
    elapsed: float
    stopped: bool


class BuildProgress:
    """The ``progress`` callback of :meth:`buildprint.builder.runner.Builder.run`, as a context
    manager: ``with BuildProgress(console) as progress: engine.build(jobs, progress)``.

    On an interactive console it keeps a live area at the bottom (an overall bar with counts
    per outcome, then one line per package being worked on: action, elapsed time, why) and
    prints each finished package above it. Elsewhere (a pipe, a dumb terminal) it prints plain
    lines: the start of each build or fetch, and each package that was not simply reused.

    Nothing else is printed between those lines: Python warnings (a plugin's, a library's)
    and log records of level WARNING and above that reach no other handler are held while the
    display runs and printed, once each, after it; a backend's warnings and output went to the
    package's log already (:func:`buildprint.builder.backend.warnings_to_log`).

    Events come from the runner's worker threads, so state changes under a lock. That lock is
    never held while printing: rich's ``Live`` takes its own lock around a refresh and then asks
    this object for its renderable, so printing under our lock could deadlock against it.
    """

    def __init__(
        self,
        console: Console,
        *,
        live: bool | None = None,
        show_reused: bool = False,
        max_running_lines: int = 12,
        refresh_per_second: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        #: A live area needs cursor movement; a dumb terminal or a file gets plain lines.
        self.live = console.is_interactive if live is None else live
        #: Reused packages are only counted by default: a no-op run of a thousand packages
        #: would otherwise scroll a thousand lines that say nothing happened.
        self.show_reused = show_reused
        self.max_running_lines = max_running_lines
        self._refresh_per_second = refresh_per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._running: dict[str, _Running] = {}
        self._finished: dict[str, Outcome] = {}
        self._counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._began = clock()
        self._stopped = False
        self._display: Live | None = None
        self._preparing = Spinner("dots")
        #: Warnings and log records held while the display runs, printed after it.
        self._held: dict[str, None] = {}
        self._shown_before: Callable[..., None] | None = None
        self._records = _HeldRecords(self._hold)

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> BuildProgress:
        self._began = self._clock()
        self._shown_before = warnings.showwarning
        warnings.showwarning = self._hold_warning
        logging.getLogger().addHandler(self._records)
        if self.live:
            self._display = Live(
                get_renderable=self._render,
                console=self.console,
                refresh_per_second=self._refresh_per_second,
                transient=False,
                # stdout carries the summary (and JSON for scripts); only stray stderr output
                # is routed above the live area.
                redirect_stdout=False,
                redirect_stderr=True,
            )
            self._display.start(refresh=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            # Late events (a worker finishing while the run unwinds) change nothing on screen.
            self._stopped = True
            unfinished = sorted(self._running)
        display, self._display = self._display, None
        if display is not None:
            display.stop()  # final frame stays on screen; the cursor is shown again
        logging.getLogger().removeHandler(self._records)
        if self._shown_before is not None:
            # What it was before, even if a handler was laid over this one meanwhile (the
            # backend's, which takes it up again when it next runs a hook).
            warnings.showwarning, self._shown_before = self._shown_before, None
        with self._lock:
            held, self._held = list(self._held), {}
        for text in held:
            self.console.print(Text.assemble(("warning:", "yellow"), f" {text}"), soft_wrap=True)
        if exc_type is None or not unfinished:
            return
        running = ", ".join(unfinished)
        if exc is not None and issubclass(exc_type, KeyboardInterrupt):
            # The CLI says it, on one line, as it exits 130 (buildprint.cli.main).
            exc.add_note(f"while working on: {running}")
            return
        self.console.print(Text(f"stopped while working on: {running}", style="bold red"))

    def _hold(self, text: str) -> None:
        with self._lock:
            self._held.setdefault(text, None)

    def _hold_warning(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        self._hold(f"{category.__name__}: {message} ({filename}:{lineno})")

    # -- the runner's callback ---------------------------------------------------------------

    def __call__(self, event: str, item: Decision | Outcome) -> None:
        line: Text | None = None
        with self._lock:
            if self._stopped:
                return
            if isinstance(item, Decision):
                name = item.node.name
                self._known.add(name)
                if event == "start":
                    self._running[name] = _Running(item, self._clock(), Spinner("dots"))
                    if not self.live and item.action in ("build", "fetch"):
                        line = self._start_line(item)
            elif event == "done":
                name = item.decision.node.name
                self._known.add(name)
                self._running.pop(name, None)
                previous = self._finished.get(name)
                if previous is not None:  # the same package reported twice: count it once
                    self._counts[previous.done] -= 1
                self._finished[name] = item
                self._counts[item.done] = self._counts.get(item.done, 0) + 1
                if item.done != "reused" or self.show_reused:
                    line = self._done_line(item)
        if line is not None:
            # Redraw first: printing repeats the last frame under the line, and that frame
            # should already count this package.
            self.refresh()
            # Plain lines stay whole (logs are grepped); above a live area rich wraps them.
            self.console.print(line, highlight=False, soft_wrap=not self.live)

    def refresh(self) -> None:
        """Redraw the live area now rather than at the next tick (no-op without one)."""
        display = self._display
        if display is not None:
            display.refresh()

    @property
    def counts(self) -> dict[str, int]:
        """Finished packages per outcome so far."""
        with self._lock:
            return dict(self._counts)

    # -- rendering ---------------------------------------------------------------------------

    def _width(self, used: int) -> int:
        return max(20, self.console.width - used)

    def _start_line(self, decision: Decision) -> Text:
        node = decision.node
        text = Text("… ", style="dim")
        text.append(f"{node.name} {node.version}", style="bold")
        text.append(": ")
        text.append(decision.action, style=style(decision.action))
        text.append(f" ({why(decision, self._width(len(node.name) + 30))})")
        return text

    def _done_line(self, outcome: Outcome) -> Text:
        node = outcome.decision.node
        text = Text(f"{_MARK.get(outcome.done, '•')} ", style=style(outcome.done))
        text.append(f"{node.name} {node.version}", style="bold")
        text.append(" ")
        text.append(outcome.done, style=style(outcome.done))
        if outcome.worker is not None:
            text.append(f" on {outcome.worker}")
        text.append(f" in {duration(outcome.seconds)}")
        reason = outcome_why(outcome, self._width(len(node.name) + len(node.version) + 30))
        if reason:
            text.append(f" — {reason}", style="red" if outcome.done == "failed" else "dim")
        return text

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            now = self._clock()
            return _Snapshot(
                total=len(self._known),
                counts=dict(self._counts),
                running=sorted(self._running.values(), key=lambda r: r.started),
                now=now,
                elapsed=now - self._began,
                stopped=self._stopped,
            )

    def _render(self) -> RenderableType:
        state = self._snapshot()
        if state.total == 0 and not state.stopped:
            # Before the runner announces the packages: the graph is being resolved and locked.
            waiting = Table.grid(padding=(0, 1))
            waiting.add_row(
                self._preparing,
                Text("preparing the build graph…"),
                Text(duration(state.elapsed), style="dim"),
            )
            return waiting
        done = sum(state.counts.values())
        pending = max(0, state.total - done - len(state.running))
        counts = Text()
        for kind, number in (*state.counts.items(), ("pending", pending)):
            if counts:
                counts.append(" · ", style="dim")
            counts.append(f"{number} {kind}", style=style(kind) if number else "dim")
        if state.running:
            counts.append(" · ", style="dim")
            counts.append(f"{len(state.running)} running", style="bold")
        counts.append(f"  {duration(state.elapsed)}", style="dim")
        ratio = f"{done}/{state.total}"
        # The bar takes what the text leaves: the counts matter more than the bar's length.
        bar = min(40, max(10, self.console.width - len(ratio) - counts.cell_len - 2))
        header = Table.grid(padding=(0, 1))
        header.add_column(width=bar, no_wrap=True)
        header.add_column(min_width=len(ratio), no_wrap=True)
        header.add_column(no_wrap=True, overflow="ellipsis")
        header.add_row(
            ProgressBar(total=max(state.total, 1), completed=done, width=bar),
            Text(ratio, style="bold"),
            counts,
        )
        if state.stopped or not state.running:
            return header
        shown = state.running[: self.max_running_lines]
        labels = [f"{r.decision.node.name} {r.decision.node.version}" for r in shown]
        elapsed = [duration(state.now - r.started) for r in shown]
        label_width = max(len(label) for label in labels)
        elapsed_width = max(len(e) for e in elapsed)
        lines = Table.grid(padding=(0, 1))
        lines.add_column(width=1, no_wrap=True)  # spinner
        lines.add_column(min_width=label_width, no_wrap=True)  # name version
        lines.add_column(min_width=5, no_wrap=True)  # action
        lines.add_column(min_width=elapsed_width, no_wrap=True, justify="right")
        lines.add_column(no_wrap=True, overflow="ellipsis")  # why
        reason_width = self._width(label_width + elapsed_width + 12)
        for running, label, spent in zip(shown, labels, elapsed, strict=True):
            decision = running.decision
            lines.add_row(
                running.spinner,
                Text(label, style="bold"),
                Text(decision.action, style=style(decision.action)),
                spent,
                Text(why(decision, reason_width), style="dim"),
            )
        hidden = len(state.running) - len(shown)
        if hidden:
            lines.add_row("", Text(f"… and {hidden} more", style="dim"), "", "", "")
        return Group(header, lines)


class _HeldRecords(logging.Handler):
    """Log records of level WARNING and above, handed to ``hold`` as one line each."""

    def __init__(self, hold: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._hold = hold

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._hold(record.getMessage())
        except Exception:  # a record whose arguments do not format: as logging does
            self.handleError(record)
