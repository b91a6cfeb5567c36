"""Atomic, non-clobbering file writes: a crash never leaves half a file, and nothing a user has is overwritten
unless they asked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from hifilight.errors import HifiError


def check_writable(path: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    if Path(path).exists() and not overwrite:
        raise HifiError(f"{path} already exists; pass {flag} true to replace it, or choose another output path")


def check_output_path(path: Path, overwrite: bool, flag: str, folder: bool = False) -> None:
    """Before long work: refuse an output that exists (unless `overwrite`), is of the wrong kind (a folder where a
    file goes, or the reverse), or lies where nothing can be written (see `check_output_folder`)."""
    path = Path(path).expanduser()
    check_writable(path, overwrite)
    if path.exists() and path.is_dir() != folder:
        kind, want = ("a file", "folder") if folder else ("a folder", "file")
        raise HifiError(f"{flag} {path} is {kind}; pass a {want} path")
    check_output_folder(path.parent, flag, shown=path)


def check_output_folder(folder: Path, flag: str, shown: Path | None = None) -> None:
    """A folder that files can be written into (it may not exist yet): nothing on the way is a file, and a probe
    file can be created and removed in the nearest existing folder. No folder is created."""
    shown = shown or folder
    existing = Path(folder).expanduser()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise HifiError(f"{flag} {shown}: {existing} is a file, so nothing can be written there; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".hifilight-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise HifiError(f"{flag} {shown}: cannot write in {existing} ({err.strerror}); choose another path") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, writer: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call `writer(tmp_path)` and move the result into place in one rename."""
    path = Path(path)
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        if Path(tmp).is_file():  # mkstemp makes 0600 files: give the result the mode a plain open() would
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_folder_atomic(path: Path, writer: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call `writer(tmp_folder)`, then replace `path` by that folder (a crash leaves any old folder as it was)."""
    import shutil

    path = Path(path)
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        writer(tmp)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def save_png(image: Image.Image, path: Path, overwrite: bool = False) -> Path:
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"), overwrite)


def image_grid(images: list[Image.Image], cols: int) -> Image.Image:
    """Tile equally sized images row by row."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    w, h = images[0].size
    cols = max(1, min(cols, len(images)))
    rows = (len(images) + cols - 1) // cols
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, img in enumerate(images):
        grid.paste(img, ((i % cols) * w, (i // cols) * h))
    return grid
