"""A local spool: deliveries held on this replica's disk while the database cannot be reached.

Each record is one file, written whole and flushed to disk (`fsync`) before it is renamed
into place, so a record is either there entirely or not at all, and a crash after the
request was answered loses nothing. File names sort in the order the records were put, so
the spool is drained in arrival order. A record leaves the spool only after the database
committed it (`remove`); storing it twice is harmless because deliveries are de-duplicated
by their id.

This module knows files and JSON, nothing of deliveries: `bot.services.ingest` turns a
delivery into a record and back.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

SUFFIX = ".json"


class SpoolFull(Exception):
    """The spool holds its maximum number of records: nothing more is taken."""


class Spool:
    """The records in one directory, counted in memory (only this process writes them)."""

    def __init__(self, directory: Path, *, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f"*{SUFFIX}.tmp"):  # a write a crash cut short
            stale.unlink(missing_ok=True)
        self._count = len(self.paths())

    @property
    def count(self) -> int:
        """How many records wait to be stored."""
        return self._count

    def put(self, record: dict[str, Any]) -> Path:
        """Write one record durably; SpoolFull when the spool is at its limit."""
        with self._lock:
            if self._count >= self.limit:
                raise SpoolFull(f"the local spool holds {self._count} deliveries already")
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):09d}{SUFFIX}"
            self._count += 1
        path = self.directory / name
        temporary = path.with_name(name + ".tmp")
        try:
            with temporary.open("wb") as file:
                file.write(json.dumps(record, separators=(",", ":")).encode("utf-8"))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
            _sync_directory(self.directory)
        except BaseException:
            temporary.unlink(missing_ok=True)
            with self._lock:
                self._count -= 1
            raise
        return path

    def paths(self, limit: int | None = None) -> list[Path]:
        """The records' files, oldest first (at most `limit`)."""
        found = sorted(self.directory.glob(f"*{SUFFIX}"))
        return found if limit is None else found[:limit]

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(path.read_bytes())
        return record

    def remove(self, paths: list[Path]) -> None:
        """Forget records once the database has committed them."""
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            with self._lock:
                self._count -= 1
        _sync_directory(self.directory)

    def set_aside(self, path: Path) -> Path:
        """Rename a file that is not a record out of the way (kept for a person to read)."""
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        with self._lock:
            self._count -= 1
        return aside


def _sync_directory(directory: Path) -> None:
    """Make a rename or removal in `directory` itself durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
