"""Private files and folders: what every part of the daemon that creates a file on disk goes through.

Receipts hold phone numbers and message text, logs and dead letters hold the same, so a file the
daemon creates is readable by its owner alone (0600) and a folder it creates is entered by its owner
alone (0700), *whatever the umask*. A mode given to ``open`` or ``mkdir`` only ever loses bits to the
umask, so each creator here asks for the private mode (never more permissive, even for an instant)
and then sets it exactly with ``fchmod``/``chmod``, since a umask such as 0277 could also take the
owner's own bits away. Files and folders that already exist keep the modes their owner gave them.

SQLite's write-ahead log and shared-memory files (``-wal``, ``-shm``) and its rollback journal are
created by SQLite itself, with the mode of the database file (os_unix.c, ``findCreateFileMode``):
creating the database file here first, 0600, makes them 0600 too, in the daemon and in the SQLite
writer process alike, without touching the process-wide umask that other threads rely on.

Errors are plain :class:`OSError`; :func:`needs_operator` tells a path that can never work until
someone changes the file system (a regular file where a folder should be, no permission, a read-only
mount) from a passing condition such as a full disk.
"""

from __future__ import annotations

import errno
import os
from typing import Final

PRIVATE_FILE_MODE: Final = 0o600
"""Mode of every file the daemon creates: read and write for the owner alone."""

PRIVATE_DIRECTORY_MODE: Final = 0o700
"""Mode of every folder the daemon creates: the owner alone may list, enter and create in it."""

_OPERATOR_ERRNOS: Final = frozenset(
    {errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP, errno.ENAMETOOLONG}
)
# Opening an existing file may race with its removal (logrotate); that many tries, then the error stands.
_OPEN_ATTEMPTS: Final = 3


def needs_operator(exc: OSError) -> bool:
    """Whether an error creating or opening a path lasts until someone changes the file system.

    True for a regular file where a folder should be (or the reverse), missing permission, a
    read-only mount, a symlink loop or an over-long name; False for conditions that may pass on
    their own (a full disk, an I/O error), which callers retry.
    """
    return exc.errno in _OPERATOR_ERRNOS


def fsync_directory(path: str) -> None:
    """fsync a folder so that names created or renamed in it survive a power loss.

    Args:
        path: The folder; ``""`` means the current one.

    Raises:
        OSError: If the folder cannot be opened or synced.
    """
    fd = os.open(path or os.curdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems (certain FUSE and network mounts) cannot sync a folder at all; the file's own
        # fsync is then all the durability there is.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def ensure_private_dir(path: str, *, fsync: bool = False) -> list[str]:
    """Create a folder and its missing parents, each with mode 0700 whatever the umask.

    Args:
        path: The folder; ``""`` (the current folder) always exists.
        fsync: Also fsync the parent of every folder created, so the new names survive a power loss.

    Returns:
        The folders created, outermost first (empty when the folder existed).

    Raises:
        OSError: If a folder cannot be created, e.g. ``NotADirectoryError`` when a regular file stands
            in the way (its ``filename`` names the path that failed).
    """
    missing: list[str] = []
    current = path
    while current and not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    created: list[str] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIRECTORY_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(
                    errno.ENOTDIR, "a file that is not a folder is in the way", directory
                ) from None
            continue
        os.chmod(directory, PRIVATE_DIRECTORY_MODE)
        created.append(directory)
        if fsync:
            fsync_directory(os.path.dirname(directory))
    return created


def open_private(
    path: str,
    flags: int,
    *,
    mode: int = PRIVATE_FILE_MODE,
    make_dirs: bool = False,
    fsync: bool = False,
) -> int:
    """Open a file, creating it with exactly ``mode`` (0600 by default) whatever the umask.

    Args:
        path: The file.
        flags: ``os.open`` access flags such as ``os.O_WRONLY | os.O_APPEND``; ``O_CREAT``, ``O_EXCL``
            and ``O_CLOEXEC`` are added here.
        mode: Permission bits of a created file. An existing file keeps its own.
        make_dirs: Create missing folders first, 0700 (see :func:`ensure_private_dir`).
        fsync: When this call created the file (or a folder), fsync the folders holding the new names.

    Returns:
        A file descriptor (close-on-exec).

    Raises:
        OSError: If the file or a folder cannot be created or opened.
    """
    directory = os.path.dirname(path)
    if make_dirs:
        ensure_private_dir(directory, fsync=fsync)
    flags |= os.O_CLOEXEC
    for attempt in range(1, _OPEN_ATTEMPTS + 1):
        try:
            # O_EXCL tells whether this call created the file, which alone gets the mode (and the fsync).
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            try:
                return os.open(path, flags)
            except FileNotFoundError:
                # Removed in between (logrotate): create it after all.
                if attempt == _OPEN_ATTEMPTS:
                    raise
                continue
        try:
            os.fchmod(fd, mode)
            if fsync:
                fsync_directory(directory)
        except OSError:
            os.close(fd)
            raise
        return fd
    raise AssertionError("unreachable")  # pragma: no cover


def create_private_file(path: str, *, make_dirs: bool = True) -> bool:
    """Make sure a file exists, creating it empty with mode 0600 (and its folders 0700) if missing.

    For files that another library opens by name, such as SQLite databases: created here first, they
    get the private mode, and SQLite gives its ``-wal``, ``-shm`` and journal files the same mode.

    Args:
        path: The file.
        make_dirs: Create missing folders too.

    Returns:
        True if this call created the file.

    Raises:
        OSError: If it cannot be created.
    """
    existed = os.path.lexists(path)
    os.close(open_private(path, os.O_RDONLY, make_dirs=make_dirs))
    return not existed


def check_can_create_in(folder: str) -> str:
    """Check, leaving nothing behind, that files can be created in ``folder`` (made if missing).

    An existing folder is tested for real: a temporary file is created in it and removed. A missing
    one is judged from its nearest existing ancestor, which must be a folder the process may write
    to; nothing is created (``check-config --connect`` may run as another user than the daemon, and
    folders made by it would then belong to the wrong user).

    Args:
        folder: The folder; ``""`` means the current one.

    Returns:
        What was found, for a report line.

    Raises:
        OSError: Why files cannot be created there; ``filename`` names the path at fault.
    """
    target = folder or os.curdir
    existing = target
    while not os.path.lexists(existing):
        parent = os.path.dirname(os.path.abspath(existing))
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise NotADirectoryError(errno.ENOTDIR, "a file that is not a folder is in the way", existing)
    if existing != target:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "cannot create folders in it", existing)
        return f"{target} is missing and will be created (0700) in {existing}, which is writable"
    probe = os.path.join(target, f".mns-consumer-probe-{os.getpid()}-{os.urandom(6).hex()}")
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE))
    os.unlink(probe)
    return f"{target} is writable"


def describe_os_error(exc: OSError, path: str = "") -> str:
    """``<path>: <reason>`` for an OSError, naming the path the system call failed on."""
    return f"{exc.filename or path}: {exc.strerror or exc}"


__all__ = [
    "PRIVATE_DIRECTORY_MODE",
    "PRIVATE_FILE_MODE",
    "check_can_create_in",
    "create_private_file",
    "describe_os_error",
    "ensure_private_dir",
    "fsync_directory",
    "needs_operator",
    "open_private",
]
