"""Long work (probing, report generation, fine-tuning) as jobs: run one at a time in a worker thread,
polled by id.

A job function receives a ``Progress`` to report ``done`` of ``total`` steps and a message; its return
value (JSON-safe) becomes the job's result, and a user error its one-sentence ``error``.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from transfer.serve.graph import json_safe

Status = Literal["queued", "running", "finished", "failed"]
KEEP = 200  # finished jobs remembered


@dataclass
class Job:
    """One unit of long work and where it stands."""

    id: str
    kind: str
    description: str
    status: Status = "queued"
    done: int = 0
    total: int = 1
    message: str = "queued"
    result: Any = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    ended: float | None = None

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        if self.status == "finished":
            return 1.0
        return min(max(self.done / self.total, 0.0), 1.0) if self.total > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The job as the API returns it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "description": self.description,
            "status": self.status,
            "done": self.done,
            "total": self.total,
            "fraction": round(self.fraction, 4),
            "message": self.message,
            "result": self.result,
            "error": self.error,
        }


class Progress:
    """Handed to a job function: ``step(message)`` for a phase, ``advance(done, total, message)``."""

    def __init__(self, job: Job) -> None:
        self._job = job

    def step(self, message: str) -> None:
        """A new phase without a known count."""
        self._job.message = message

    def advance(self, done: int, total: int, message: str | None = None) -> None:
        """``done`` of ``total`` steps finished."""
        self._job.done, self._job.total = done, max(total, 1)
        if message is not None:
            self._job.message = message


class JobRunner:
    """Runs jobs one at a time (they hold the store's write lock) and keeps their status."""

    def __init__(self, is_user_error: Callable[[BaseException], bool]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgraft-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._is_user_error = is_user_error

    def submit(self, kind: str, description: str, fn: Callable[[Progress], Any]) -> Job:
        """Queue ``fn`` and return its job at once."""
        job = Job(id=uuid.uuid4().hex[:12], kind=kind, description=description)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._pool.submit(self._run, job, fn)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or ``None``."""
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        """Every remembered job, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: -j.created)

    def shutdown(self) -> None:
        """Wait for the running job; drop the queued ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: Job, fn: Callable[[Progress], Any]) -> None:
        job.status, job.message = "running", "started"
        try:
            job.result = json_safe(fn(Progress(job)))
        except Exception as exc:
            job.status = "failed"
            job.error = str(exc) if self._is_user_error(exc) else f"internal error: {exc!r}"
            if not self._is_user_error(exc):
                traceback.print_exc()
        else:
            job.status, job.message = "finished", "done"
        finally:
            job.ended = time.time()

    def _forget_old(self) -> None:
        ended = sorted((j for j in self._jobs.values() if j.ended), key=lambda j: j.ended or 0)
        for job in ended[: max(0, len(ended) - KEEP)]:
            del self._jobs[job.id]
