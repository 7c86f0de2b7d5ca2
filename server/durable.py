"""Small files that must survive a crash or a power cut: written whole or not at all.

Used for what a node keeps on its own disk while the database is away (the recorder's
spill file, phone check-ins waiting to be stored). Mode 0600: these hold ids, and a
check-in's phone number. Nodes may share a data directory, so the temporary file each
write goes through has a name of its own (two writers never interleave in one).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a reader (or the next start, after a crash) sees
    the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # on disk before it replaces the old one, not just named
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)  # and the rename itself survives a power cut


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the file itself is synced
    finally:
        os.close(fd)
