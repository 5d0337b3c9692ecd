"""Writing outputs without losing anything: checked paths, verified atomic files, marked output folders.

The rules (as git and pip never remove files they did not create):

- Every output path is checked before any work (:func:`check_output_file`, :func:`check_output_folder`): an
  existing file needs ``overwrite``; a folder in the way, a missing or read-only parent, a path that is one
  of the inputs are errors naming the user's path.
- A file is written to a hidden temporary sibling (``.<name>.lesionseg-<pid>-<hex><suffix>``), flushed to
  disk, verified (``verify``, e.g. a NIfTI read-back check), and only then renamed over the target
  (:func:`atomic_write`). A full disk is an :class:`~lesionseg.errors.OutputError` "no space left on ...".
- The outputs of one command are published together or not at all (:func:`publish_together`).
- An output folder is assembled in a temporary sibling and carries a marker file (:data:`MARKER`) listing
  what LesionSeg wrote into it. ``--overwrite`` replaces an existing folder only when it is such a marked
  folder holding nothing else; the current folder, its parents, the home folder and a folder holding an
  input are refused. The swap keeps the old folder until the new one is in place (:func:`output_folder`).
- Temporaries of a process that was killed (SIGKILL) are removed by the next run writing beside them
  (:func:`sweep_stale`); an old output folder left aside by a killed swap is put back.

This module does not import torch or SimpleITK.
"""
from __future__ import annotations

import contextvars
import errno
import json
import logging
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

from .errors import InputError, OutputError, OutputExistsError

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
MARKER = ".lesionseg-output.json"
"""File in every output folder LesionSeg writes: the tool, the time and the list of files it wrote."""
_TMP = re.compile(r"^\.(?P<name>.+)\.lesionseg-(?P<pid>\d+)-[0-9a-f]{8}(?P<kind>~old|~tmp)?(\.[^/]*)?$")
_pending: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("lesionseg_pending", default=None)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _temp_name(name: str, kind: str = "") -> str:
    return f".{name}.lesionseg-{os.getpid()}-{secrets.token_hex(4)}{kind}"


def _suffix(name: str) -> str:
    lower = name.lower()
    for double in (".nii.gz", ".tar.gz"):
        if lower.endswith(double):
            return name[-len(double):]
    return Path(name).suffix


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(folder: PathLike) -> None:
    """Remove this tool's temporaries in ``folder`` whose process is gone (killed with SIGKILL); an old
    output folder set aside by a killed swap (``.<name>.lesionseg-<pid>-<hex>~old``) is renamed back when
    ``<name>`` is missing, removed otherwise. Never touches a name that does not match the pattern."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    for entry in entries:
        match = _TMP.match(entry.name)
        if not match or int(match["pid"]) == os.getpid() or _alive(int(match["pid"])):
            continue
        target = entry.parent / match["name"]
        try:
            if match["kind"] == "~old" and not target.exists() and not target.is_symlink():
                entry.rename(target)
                log.warning("restored %s, left aside by an interrupted run", target)
            elif entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            log.info("removed %s, a temporary of an interrupted run (process %s)", entry, match["pid"])
        except OSError as exc:
            log.debug("could not sweep %s: %s", entry, exc)


def _missing_parent(path: Path, shown: Path) -> InputError:
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            return InputError(f"cannot write {shown}: {parent} is a file, not a folder")
    return InputError(f"cannot write {shown}: the output folder {path.parent} does not exist")


def _probe_writable(folder: Path, shown: Path) -> None:
    """Create and remove a file in ``folder``; OutputError naming ``shown`` when that is not possible (as
    root, a read-only mode bit does not stop writing, so asking ``os.access`` would not do)."""
    probe = folder / _temp_name("probe")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise OutputError(f"no space left on {folder} (writing {shown})") from None
        raise OutputError(f"cannot write {shown}: {(exc.strerror or str(exc)).lower()} in {folder}") from None
    probe.unlink(missing_ok=True)


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(path: PathLike, overwrite: bool = False, inputs: Iterable[PathLike] = (),
                      suffixes: Optional[Sequence[str]] = None, what: str = "output") -> Path:
    """Raise unless ``path`` can be written as a file; call before any work. Returns it as a Path.

    Errors: :class:`InputError` for a missing parent folder (or a parent that is a file), a wrong suffix
    (``suffixes``: allowed endings, case-insensitive), a path that is one of ``inputs``;
    :class:`OutputError` for a folder (or a link to one) at ``path`` and a parent LesionSeg cannot write in;
    :class:`OutputExistsError` for an existing file without ``overwrite``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"the {what} {path} is a folder; give a file name (e.g. {path / 'out.nii.gz'})")
    if suffixes and not any(path.name.lower().endswith(s) for s in suffixes):
        raise InputError(f"unsupported {what} format for {path.name}; use one of {', '.join(suffixes)}")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise _missing_parent(path.absolute(), path)
    for given in inputs:
        if _same_path(path, Path(given)) or path.absolute() == Path(given).absolute():
            raise InputError(f"the {what} {path} is the input {given}; write to another file")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    _probe_writable(parent, path)
    return path


def _written_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()}


def _check_ours(folder: Path, shown: Path) -> None:
    """Raise unless ``folder`` is a marked LesionSeg output holding only the files its marker lists."""
    marker = folder / MARKER
    try:
        listed = set(json.loads(marker.read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{shown} is not empty and is not a LesionSeg output folder (no readable {MARKER}); "
                         "--overwrite only replaces LesionSeg's own earlier output: choose a new folder, or "
                         "empty this one yourself") from None
    foreign = sorted(_written_files(folder) - listed - {MARKER})
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise InputError(f"{shown} holds files LesionSeg did not write ({', '.join(foreign[:3])}{more}); "
                         "--overwrite would delete them: move them away or choose a new folder")


def check_output_folder(output: PathLike, overwrite: bool = False, inputs: Iterable[PathLike] = ()) -> Path:
    """Raise unless ``output`` can become (or replace) an output folder; call before any work.

    Refused: a file; a symbolic link; the current folder, any folder above it, the home folder; a folder
    holding one of ``inputs``; a missing parent; a non-empty folder without ``overwrite``
    (:class:`OutputExistsError`), or with ``overwrite`` when it is not a marked LesionSeg output or holds
    files LesionSeg did not write. Returns ``output`` as a Path.
    """
    output = Path(output)
    if output.is_symlink():
        raise InputError(f"{output} is a symbolic link; give the folder itself or a new name")
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file, not a folder")
    where = output.resolve()
    cwd = Path.cwd().resolve()
    if where == cwd or where in cwd.parents or where == Path.home().resolve() or where == where.parent:
        raise InputError(f"refusing to write the output folder over {output} ({where}): it is the current folder, "
                         f"a folder above it or the home folder; give a new folder name, e.g. {output / 'lesionseg-output'}")
    for given in inputs:
        src = Path(given).resolve()
        if src == where or where in src.parents:
            raise InputError(f"the output folder {output} holds the input {given}; choose another folder")
    if not where.parent.is_dir():
        raise _missing_parent(where, output)
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{output} exists and is not empty; pass --overwrite to replace it")
        _check_ours(where, output)
    _probe_writable(where.parent, output)
    return output


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _no_space(path: Path) -> OutputError:
    return OutputError(f"no space left on {path.absolute().parent} while writing {path.name}; nothing was written")


def atomic_write(path: PathLike, writer: Callable[[Path], object], overwrite: bool = False,
                 verify: Optional[Callable[[Path], None]] = None, inputs: Iterable[PathLike] = ()) -> Path:
    """Write ``path`` atomically: ``writer(tmp)`` fills a hidden sibling that keeps the target's suffix (for
    format-sniffing writers), which is flushed to disk, checked with ``verify(tmp)`` (raising on a bad file)
    and renamed over ``path`` — at once, or at the end of the enclosing :func:`publish_together` block.

    On any error the temporary is removed and ``path`` is untouched. A full disk (found by the writer, the
    flush or ``verify`` while the disk is full) raises :class:`OutputError` "no space left on ...".
    """
    path = Path(path)
    check_output_file(path, overwrite, inputs)
    tmp = path.absolute().parent / (_temp_name(path.name) + _suffix(path.name))
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask applies, unlike mkstemp
        writer(tmp)
        _fsync(tmp)
        if verify is not None:
            try:
                verify(tmp)
            except Exception:
                if _disk_nearly_full(tmp):
                    raise _no_space(path) from None
                raise
        pending = _pending.get()
        if pending is not None:
            pending.append((tmp, path, overwrite))
            return path
        _publish([(tmp, path, overwrite)])
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in NO_SPACE:
            raise _no_space(path) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _disk_nearly_full(path: Path) -> bool:
    """True when the file system holding ``path`` has (almost) no space left (under 64 KiB)."""
    try:
        return shutil.disk_usage(path.parent).free < (1 << 16)
    except OSError:
        return False


def _publish(items: list[tuple[Path, Path, bool]]) -> None:
    """Rename each temporary over its target; all or none (earlier files are put back on a failure)."""
    for _, path, overwrite in items:
        if (path.exists() or path.is_symlink()) and not overwrite:  # appeared meanwhile
            raise OutputExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    done: list[tuple[Path, Optional[Path]]] = []
    try:
        for tmp, path, _ in items:
            backup = None
            if len(items) > 1 and (path.exists() or path.is_symlink()):
                backup = path.absolute().parent / _temp_name(path.name, "~old")
                os.rename(path, backup)
            done.append((path, backup))
            os.replace(tmp, path)
    except BaseException:
        for path, backup in reversed(done):
            if backup is not None:
                os.replace(backup, path)
            else:
                path.unlink(missing_ok=True)
        raise
    for _, backup in done:
        if backup is not None:
            backup.unlink(missing_ok=True)


@contextmanager
def publish_together() -> Iterator[None]:
    """Within the block, :func:`atomic_write` verifies each file but renames none; when the block ends
    without error all are renamed into place together (none if one fails), otherwise all are removed.
    Nested blocks join the outer one."""
    if _pending.get() is not None:
        yield
        return
    pending: list = []
    token = _pending.set(pending)
    try:
        yield
        _pending.reset(token)
        token = None
        _publish(pending)
    except BaseException:
        for tmp, _, _ in pending:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if token is not None:
            _pending.reset(token)


@contextmanager
def output_folder(output: PathLike, overwrite: bool = False, inputs: Iterable[PathLike] = (),
                  command: str = "") -> Iterator[Path]:
    """Assemble an output folder atomically: yields a hidden temporary sibling to write into, which gets the
    :data:`MARKER` and is renamed to ``output`` when the block ends without error (deleted otherwise).

    :func:`check_output_folder` runs first (and again just before the swap). An earlier marked output at
    ``output`` is set aside, the new folder renamed into place, then the old one deleted; the sibling is made
    with ``mkdir`` (the user's umask), not ``tempfile.mkdtemp``, whose 0700 mode would survive the rename.
    """
    inputs = list(inputs)
    output = check_output_folder(output, overwrite, inputs)
    final = output.resolve()
    sweep_stale(final.parent)
    work = final.parent / _temp_name(final.name, "~tmp")
    work.mkdir()
    try:
        yield work
        files = sorted(_written_files(work))
        (work / MARKER).write_text(json.dumps({"tool": "lesionseg", "command": command,
                                               "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                               "files": files}, indent=1) + "\n", encoding="utf-8")
        check_output_folder(output, overwrite, inputs)
        old = None
        if final.exists():
            old = final.parent / _temp_name(final.name, "~old")
            final.rename(old)
        try:
            work.rename(final)
        except BaseException:
            if old is not None:
                old.rename(final)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        if exc.errno in NO_SPACE:
            raise OutputError(f"no space left on {final.parent} while writing {output}; nothing was written") from None
        raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
