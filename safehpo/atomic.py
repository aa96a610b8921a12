"""Atomic files: whatever is written goes to a temporary file in the same folder, then is renamed
over the target, so a reader (or a run killed mid-write) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_atomically(path: Path | str, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """Call write(tmp_path) on a temporary file beside `path`, then os.replace it onto `path`.

    The file gets the mode a plain open() would give it (0666 less the umask), not mkstemp's 0600,
    so results on shared storage are readable by those the umask allows."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: Path | str, data: bytes | str) -> Path:
    """Write text or bytes atomically, fsync'd before the rename."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    return replace_atomically(path, write)
