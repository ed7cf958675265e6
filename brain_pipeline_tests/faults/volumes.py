"""A small file system of its own for a fault test: a tmpfs mounted for the test's time."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_volume(mount_point: Path, megabytes: int):
    """A tmpfs of `megabytes` at `mount_point` (needs root, as on the CI machine); skipped
    with the reason where it cannot be mounted, failed instead under CI=true."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs for the disk-full test: {mounted.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def fill(volume: Path, leave_bytes: int) -> Path:
    """Fill the volume with one file until `leave_bytes` are free."""
    filler = volume / "filler.bin"
    free = shutil.disk_usage(volume).free - leave_bytes
    with open(filler, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, max(free, 0))
    return filler
