"""Private files and folders: what every part of the daemon that creates a file on disk goes through.

Receipts, logs and dead letters hold phone numbers and message text, so a file the daemon creates is
0600 and a folder 0700 *whatever the umask* (asked for at creation, then set exactly: a umask such as
0277 also takes the owner's bits). Existing ones keep their modes. SQLite gives its ``-wal``, ``-shm``
and journal files the database file's mode, so creating that here first makes them private too.
"""

from __future__ import annotations

import errno
import os
from typing import Final

PRIVATE_FILE_MODE: Final = 0o600
PRIVATE_DIRECTORY_MODE: Final = 0o700

_OPERATOR_ERRNOS: Final = frozenset(
    {errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP, errno.ENAMETOOLONG}
)


def needs_operator(exc: OSError) -> bool:
    """Whether an error creating or opening a path lasts until someone changes the file system.

    True for a file in a folder's place (or the reverse), no permission, a read-only mount, a symlink
    loop or an over-long name; False for what may pass (a full disk, an I/O error), which callers retry.
    """
    return exc.errno in _OPERATOR_ERRNOS


def fsync_directory(path: str) -> None:
    """fsync a folder (``""``: the current one) so that names created or renamed in it survive a power loss."""
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
    """Create a folder and its missing parents, each 0700; return those created, outermost first.

    With ``fsync`` the parent of each folder created is synced too. A regular file in the way raises
    ``NotADirectoryError`` naming it.
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
    path: str, flags: int, *, mode: int = PRIVATE_FILE_MODE, make_dirs: bool = False, fsync: bool = False
) -> int:
    """``os.open`` a file (close-on-exec), creating it with exactly ``mode`` whatever the umask.

    ``make_dirs`` creates missing folders first (0700); with ``fsync``, the folders holding names this
    call created are synced. An existing file keeps its own mode.
    """
    directory = os.path.dirname(path)
    if make_dirs:
        ensure_private_dir(directory, fsync=fsync)
    flags |= os.O_CLOEXEC
    # Opening an existing file may race with its removal (logrotate): three tries, then the error stands.
    for attempts_left in reversed(range(3)):
        try:
            # O_EXCL tells whether this call created the file, which alone gets the mode (and the fsync).
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
            break
        except FileExistsError:
            try:
                return os.open(path, flags)
            except FileNotFoundError:
                # Removed in between (logrotate): create it after all.
                if not attempts_left:
                    raise
    try:
        os.fchmod(fd, mode)
        if fsync:
            fsync_directory(directory)
    except OSError:
        os.close(fd)
        raise
    return fd


def create_private_file(path: str) -> bool:
    """Make sure a file another library opens by name (SQLite) exists, 0600; True if this call created it."""
    existed = os.path.lexists(path)
    os.close(open_private(path, os.O_RDONLY, make_dirs=True))
    return not existed


def check_can_create_in(folder: str) -> str:
    """Check, leaving nothing behind, that files can be created in ``folder`` (``""``: the current one).

    An existing folder is tested by creating and removing a file. A missing one is judged from its
    nearest existing ancestor and not created (``check-config --connect`` may run as another user).

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


def describe_os_error(exc: OSError, path: str) -> str:
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
