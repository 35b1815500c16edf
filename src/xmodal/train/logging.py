"""Run logging: a JSONL metrics log (plus TensorBoard when installed) and tqdm progress bars."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, *, initial: int = 0) -> Any:
    """A tqdm bar with rate and ETA on stderr."""
    return tqdm(total=total, desc=desc, initial=initial, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


def _step_of(line: str) -> float:
    """The ``step`` of a JSONL record (-1 for the config header, +inf for an unreadable line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return float("inf")  # a line cut short by the crash
    step = record.get("step", -1) if isinstance(record, dict) else float("inf")
    return float(step) if isinstance(step, int | float) else float("inf")


class MetricsLogger:
    """Appends one JSON object per line to ``<run>/metrics.jsonl``; mirrors scalars to TensorBoard.

    Args:
        run_dir: the run folder.
        append: keep existing lines (resume) instead of starting a new log.
        resume_step: with ``append``, drop the records of steps after this one first: a run that
            crashed after its last checkpoint logged steps that the resumed run repeats.
    """

    def __init__(self, run_dir: Path, *, append: bool = False, resume_step: int | None = None) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.jsonl"
        if append and resume_step is not None and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= resume_step]
            self.path.write_text("".join(f"{line}\n" for line in kept))
        self._f = open(self.path, "a" if append else "w")  # noqa: SIM115 (kept open for the run)
        self._tb: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard is optional
            self._tb = None

    def write_config(self, config: dict[str, Any]) -> None:
        """Record the resolved config as the first line."""
        self._f.write(json.dumps({"config": config}) + "\n")
        self._f.flush()

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (must contain ``step``)."""
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float):
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        """Flush and close."""
        self._f.close()
        if self._tb is not None:
            self._tb.close()


class NullLogger:
    """The logger of ranks other than 0: accepts records and writes nothing."""

    def write_config(self, config: dict[str, Any]) -> None:
        """Ignore the config."""

    def log(self, record: dict[str, Any]) -> None:
        """Ignore the record."""

    def close(self) -> None:
        """Nothing to close."""
