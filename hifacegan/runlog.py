"""A run folder's ``config.json`` and ``log.jsonl`` (rank 0), written only once training has really started.

- Nothing is written before the first batch arrives: a start that fails (bad data, bad options) leaves no
  trace, and a folder without ``checkpoints/latest.pt`` is not a run that needs ``--resume``.
- A resumed log reads like one run: records after the checkpoint's step (written by the interrupted job,
  and about to be written again) and earlier ``end`` records are dropped when the run starts again.
- Both files live in the run folder and are never written through a symbolic link (facedeg.files).
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from facedeg.files import open_nofollow, write_atomic

LOG = "log.jsonl"
CONFIG = "config.json"
#: Any loss term above this (a hinge or L1 loss is O(1)-O(10)) means training has diverged.
DIVERGED = 1e5


def kept_records(text: str, step: int) -> list[str]:
    """The lines of an earlier log.jsonl that a run resuming at ``step`` keeps: records up to ``step``,
    no ``end`` record, nothing unreadable (a line cut short when the job was killed).

    >>> kept_records('{"event": "train", "step": 1}\\n{"event": "end", "step": 1}\\n{"event": "train", "st', 1)
    ['{"event": "train", "step": 1}']
    """
    kept = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") != "end" and isinstance(record.get("step"), int) \
                and record["step"] <= step:
            kept.append(line)
    return kept


class RunLog:
    """Rank 0's log of one training call; :meth:`start` writes ``config.json`` and the log's head."""

    def __init__(self, run_dir: Path, config: dict[str, Any], resume_step: int) -> None:
        self.run_dir, self.config, self.resume_step = Path(run_dir), config, resume_step
        self._file: IO[str] | None = None
        self.started = False

    def start(self) -> None:
        """Called when the first batch has arrived (cheap after the first call)."""
        if self.started:
            return
        self.started = True
        write_atomic(self.run_dir / CONFIG, (json.dumps(self.config, indent=1) + "\n").encode(), self.run_dir)
        old = ""
        if self.resume_step > 0:
            with suppress(FileNotFoundError):
                with open(open_nofollow(self.run_dir / LOG, os.O_RDONLY, self.run_dir), encoding="utf-8",
                          errors="replace") as f:
                    old = f.read()
        kept = kept_records(old, self.resume_step)
        write_atomic(self.run_dir / LOG, "".join(line + "\n" for line in kept).encode(), self.run_dir)
        self._file = open(open_nofollow(self.run_dir / LOG, os.O_WRONLY | os.O_APPEND, self.run_dir),  # noqa: SIM115
                          "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.start()
        assert self._file is not None
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def end(self, record: dict[str, Any]) -> None:
        """The run's last record (only for a run that started)."""
        if not self.started:
            return
        if self._file is None:
            self._file = open(open_nofollow(self.run_dir / LOG, os.O_WRONLY | os.O_APPEND, self.run_dir),  # noqa: SIM115
                              "a", encoding="utf-8")
        self.write(record)
        self.close()


def divergence(losses: dict[str, float], step: int) -> str | None:
    """A warning when a loss term has blown up (finite, but far beyond its usual range), else None.

    >>> divergence({"g_gan": 3.1e24, "d_real": 0.5}, 7)
    'warning: training is diverging at step 7 (g_gan 3.1e+24): lower the learning rates (lr_g, lr_d)'
    """
    worst = max(losses, key=lambda k: abs(losses[k]), default=None)
    if worst is None or abs(losses[worst]) <= DIVERGED:
        return None
    return (f"warning: training is diverging at step {step} ({worst} {losses[worst]:.3g}): "
            "lower the learning rates (lr_g, lr_d)")
