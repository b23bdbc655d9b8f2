"""The app bundle: a gzipped tar of the app's local files, sent base64-encoded in the deploy request.

The archive is deterministic (sorted names, fixed times and owners), so the same files give the same bytes.
"""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path


def make_bundle(files: Iterable[tuple[str, Path]]) -> str:
    """Pack `(path inside the bundle, local path)` pairs; the first pair for a bundle path wins."""
    entries: dict[str, Path] = {}
    for arcname, path in files:
        entries.setdefault(arcname, path)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for arcname in sorted(entries):
            data = entries[arcname].read_bytes()
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode("ascii")

