"""Real filesystems that fail: a small tmpfs that fills up, a directory mounted read-only.

Mounting needs root, which CI has. Anywhere else these tests fail and say why: a test
that quietly skipped its disk errors would prove nothing.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test mounts filesystems and must run as root (CI does)")


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed: {result.stderr.strip()}")


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (as mount takes it: ``3m``) at ``mount_point``."""
    require_root()
    mount_point.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point))
    try:
        yield mount_point
    finally:
        _unmount(mount_point)


@contextmanager
def read_only(directory: Path) -> Iterator[Path]:
    """``directory`` bind-mounted read-only over itself: not even root may write in it
    (a permission bit would not stop root), while the rest of its filesystem stays
    writable."""
    require_root()
    _mount("--bind", str(directory), str(directory))
    try:
        _mount("-o", "remount,bind,ro", str(directory))
        yield directory
    finally:
        _unmount(directory)


def fill(directory: Path) -> None:
    """Write a file in ``directory`` until its filesystem has no block left."""
    with (directory / "filler").open("wb", buffering=0) as out:
        for size in (1 << 16, 1 << 12, 1 << 9):  # ever smaller writes fill what is left
            block = b"\0" * size
            try:
                while True:
                    out.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
