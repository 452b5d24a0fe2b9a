"""The progress line of a running stage, written by the stage itself and shown by ``zagreus run``.

While a stage notebook runs, the runner names a folder in ``$ZAGREUS_PROGRESS`` (under the run
folder's ``.cache``, so a Slurm job on a shared file system writes there too). Whatever reports
progress (the trainer, the eval loop, the SFT log follower, a Slurm follow) writes one line of
text to its own file in that folder with :func:`report`, replaced atomically; :class:`Watcher`, in
the runner, shows those lines after the notebook's cell counter: in place on a terminal, as a new
line every ``interval`` seconds in a log. Outside ``zagreus run`` (JupyterLab) nothing is written.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, TextIO

from ..results import formatting

ENV = "ZAGREUS_PROGRESS"
SEP = " · "
LOG_INTERVAL = 10.0  # seconds between two progress lines when stderr is not a terminal (a log, CI)


def report(source: str, text: str) -> None:
    """Show ``text`` as ``source``'s part of the progress line (no-op outside ``zagreus run``).
    A progress hint never fails a stage: a write that fails is dropped."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    path = Path(folder) / f"{source}.txt"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


class Steps:
    """Progress of a loop of ``total`` steps: ``<label> step 120/400 · loss 5.23 · 0:00:42 left``.

    ``start`` is the step the loop starts from (a resumed run): the time left is the mean time of
    the steps done since then times the steps still to do. Reports at most every ``min_interval``
    seconds, and always the last step."""

    def __init__(self, source: str, label: str, total: int, start: int = 0, *, unit: str = "step",
                 min_interval: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self.source, self.label, self.total, self.start, self.unit = source, label, total, start, unit
        self.min_interval, self.clock = min_interval, clock
        self.t0 = clock()
        self._last = float("-inf")

    def text(self, step: int, *parts: str) -> str:
        done = step - self.start
        items = [f"{self.label} {self.unit} {step}/{self.total}", *[p for p in parts if p]]
        if 0 < done and step < self.total:
            left = (self.clock() - self.t0) / done * (self.total - step)
            items.append(f"{formatting.duration(left)} left")
        return SEP.join(items)

    def update(self, step: int, *parts: str) -> None:
        now = self.clock()
        if step < self.total and now - self._last < self.min_interval:
            return
        self._last = now
        report(self.source, self.text(step, *parts))


class _CellCounter:
    """A file for papermill's tqdm cell bar, rendered as ``{n}/{total}``: keeps the last count."""

    def __init__(self):
        self.text = ""

    def write(self, s: str) -> None:
        found = re.findall(r"\d+/\d+", s)
        if found:
            self.text = f"cell {found[-1]}"

    def flush(self) -> None:
        pass


class Watcher:
    """Shows ``label``, the notebook's cell and the stage's own progress lines while a stage runs.

    Use as a context manager around the notebook's execution: it sets ``$ZAGREUS_PROGRESS`` to
    ``folder`` (emptied first, removed after) and passes :attr:`progress_bar` to papermill."""

    def __init__(self, label: str, folder: Path, stream: TextIO, *, interval: float | None = None,
                 poll: float = 0.5):
        self.label, self.folder, self.stream = label, Path(folder), stream
        self.interval, self.poll = LOG_INTERVAL if interval is None else interval, poll
        self.cells = _CellCounter()
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown, self._printed_at, self._previous_env = "", float("-inf"), None

    @property
    def progress_bar(self) -> dict:
        """papermill's ``progress_bar``: tqdm's options that render the cell count into :attr:`cells`."""
        return {"file": self.cells, "bar_format": "{n}/{total}", "mininterval": 0, "ascii": True}

    def line(self) -> str:
        """The current progress line: label, cell, then each reporter's text (by source name)."""
        parts = [self.label, self.cells.text]
        try:
            files = sorted(p for p in self.folder.glob("*.txt"))
        except OSError:
            files = []
        for path in files:
            try:
                parts.append(path.read_text(encoding="utf-8").strip())
            except OSError:
                continue
        return SEP.join(p for p in parts if p)

    def refresh(self, final: bool = False) -> None:
        text = self.line()
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            if text != self._shown:
                self.stream.write("\r" + text[:width] + "\x1b[K")
                self.stream.flush()
        elif text != self._shown and (final or time.monotonic() - self._printed_at >= self.interval):
            self.stream.write(text + "\n")
            self.stream.flush()
            self._printed_at = time.monotonic()
        else:
            return
        self._shown = text

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            self.refresh()

    def __enter__(self) -> "Watcher":
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._previous_env = os.environ.get(ENV)
        os.environ[ENV] = str(self.folder)
        self._thread = threading.Thread(target=self._loop, name="zagreus-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")  # the runner's "<stage> ok (12.3 s)" line replaces it
            self.stream.flush()
        if self._previous_env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = self._previous_env
        shutil.rmtree(self.folder, ignore_errors=True)
