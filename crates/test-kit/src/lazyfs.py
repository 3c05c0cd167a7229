"""A "lazy" FUSE filesystem that loses what a power cut loses.

Usage: /usr/bin/python3 lazyfs.py BACKING MOUNTPOINT   (as root; runs in the foreground)

Everything passes through to the BACKING folder, except each file's writes and truncates: those
stay in this process's memory until that file is fsynced or fdatasynced. Killing this process
with SIGKILL and remounting a new one over BACKING therefore keeps exactly what was made durable
by fsync/fdatasync, and loses everything else (the per-file model of a power cut: creating,
renaming and unlinking a file count as durable at once; put an ext4 image on this filesystem to
test those too).

Held data counts against the backing filesystem's free space: a write that needs a new page
when the held pages would no longer fit fails with ENOSPC, as a real filesystem refuses a write
it has no room for, instead of failing only at fsync.

fsync must be implemented: a filesystem that answers "not implemented" makes the kernel stop
sending it, and every later fsync would silently succeed. The writeback cache stays off (libfuse 2
does not enable it), so every write(2) reaches this process before it returns.
"""

import errno
import os
import sys

from fusepy import FUSE, FuseOSError, Operations

PAGE = 4096


class Pending:
    """A file's writes and truncates since its last fsync, kept as whole pages."""

    def __init__(self, size):
        self.pages = {}  # page number -> bytearray(PAGE), the file's current content there
        self.size = size  # the file's current size
        self.cut = None  # the lowest size truncated to: backing bytes from here on are stale


class Lazy(Operations):
    use_ns = True

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.pending = {}  # path -> Pending
        self.held_pages = 0  # pages held over all files, which must fit in the backing folder

    def _full(self, path):
        return self.root + path

    # What a pending file reads as: its pages, else the backing file's bytes below `cut`.
    def _backing_page(self, path, pending, number):
        start = number * PAGE
        limit = PAGE if pending.cut is None else max(0, min(PAGE, pending.cut - start))
        data = b""
        if limit > 0:
            with open(self._full(path), "rb") as f:
                f.seek(start)
                data = f.read(limit)
        return bytearray(data.ljust(PAGE, b"\0"))

    def _page(self, path, pending, number):
        page = pending.pages.get(number)
        if page is None:
            st = os.statvfs(self.root)
            if (self.held_pages + 1) * PAGE > st.f_bavail * st.f_frsize:
                raise FuseOSError(errno.ENOSPC)
            page = self._backing_page(path, pending, number)
            pending.pages[number] = page
            self.held_pages += 1
        return page

    def _forget(self, path):
        pending = self.pending.pop(path, None)
        if pending is not None:
            self.held_pages -= len(pending.pages)
        return pending

    def _pending(self, path):
        pending = self.pending.get(path)
        if pending is None:
            pending = Pending(os.lstat(self._full(path)).st_size)
            self.pending[path] = pending
        return pending

    # Files and folders, passed through (durable at once in this model).
    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self._full(path), uid, gid)

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        attrs = {
            key: getattr(st, key)
            for key in (
                "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks",
                "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
            )
        }
        for key in ("atime", "mtime", "ctime"):
            attrs["st_" + key] = attrs.pop("st_" + key + "_ns")
        pending = self.pending.get(path)
        if pending is not None:
            attrs["st_size"] = pending.size
            attrs["st_blocks"] = (pending.size + 511) // 512
        return attrs

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def readlink(self, path):
        return os.readlink(self._full(path))

    def mknod(self, path, mode, dev):
        os.mknod(self._full(path), mode, dev)

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        os.rmdir(self._full(path))

    def symlink(self, target, source):
        os.symlink(source, self._full(target))

    def link(self, target, source):
        os.link(self._full(source), self._full(target))

    def unlink(self, path):
        os.unlink(self._full(path))
        self._forget(path)

    def rename(self, old, new):
        os.rename(self._full(old), self._full(new))
        moved = {}
        for path in list(self.pending):
            if path == new or path.startswith(new + "/"):
                self._forget(path)
        for path in list(self.pending):
            if path == old or path.startswith(old + "/"):
                moved[new + path[len(old):]] = self.pending.pop(path)
        self.pending.update(moved)

    def utimens(self, path, times=None):
        os.utime(self._full(path), ns=times)

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        return {
            key: getattr(st, key)
            for key in (
                "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax",
            )
        }

    # File contents: held here until fsync.
    def create(self, path, mode, fi=None):
        fd = os.open(self._full(path), os.O_WRONLY | os.O_CREAT, mode)
        os.close(fd)
        return 0

    def open(self, path, flags):
        if not os.path.exists(self._full(path)):
            raise FuseOSError(errno.ENOENT)
        return 0

    def read(self, path, size, offset, fh):
        pending = self.pending.get(path)
        if pending is None:
            with open(self._full(path), "rb") as f:
                f.seek(offset)
                return f.read(size)
        end = min(offset + size, pending.size)
        out = bytearray()
        position = offset
        while position < end:
            number, within = divmod(position, PAGE)
            page = pending.pages.get(number)
            if page is None:
                page = self._backing_page(path, pending, number)
            take = min(PAGE - within, end - position)
            out += page[within:within + take]
            position += take
        return bytes(out)

    def write(self, path, data, offset, fh):
        pending = self._pending(path)
        position, done = offset, 0
        while done < len(data):
            number, within = divmod(position, PAGE)
            take = min(PAGE - within, len(data) - done)
            page = self._page(path, pending, number)
            page[within:within + take] = data[done:done + take]
            position += take
            done += take
        pending.size = max(pending.size, offset + len(data))
        return len(data)

    def truncate(self, path, length, fh=None):
        pending = self._pending(path)
        pending.size = length
        for number in [n for n in pending.pages if n * PAGE >= length]:
            del pending.pages[number]
            self.held_pages -= 1
        number, within = divmod(length, PAGE)
        if within and number in pending.pages:
            pending.pages[number][within:] = bytes(PAGE - within)
        pending.cut = length if pending.cut is None else min(pending.cut, length)

    def flush(self, path, fh):
        return 0  # close(2) makes nothing durable

    def release(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        pending = self._forget(path)
        if pending is None:
            return 0
        fd = os.open(self._full(path), os.O_WRONLY)
        try:
            if pending.cut is not None:
                os.ftruncate(fd, pending.cut)
            for number in sorted(pending.pages):
                start = number * PAGE
                if start < pending.size:
                    page = pending.pages[number]
                    os.pwrite(fd, page[: min(PAGE, pending.size - start)], start)
            os.ftruncate(fd, pending.size)
        except OSError:
            # Not durable (a full disk): the data stays held, as a page cache keeps it, and
            # the caller gets the error.
            self.pending[path] = pending
            self.held_pages += len(pending.pages)
            raise
        finally:
            os.close(fd)
        return 0

    def fsyncdir(self, path, datasync, fh):
        return 0


def main():
    backing, mountpoint = sys.argv[1], sys.argv[2]
    FUSE(
        Lazy(backing),
        mountpoint,
        foreground=True,
        nothreads=True,
        allow_other=True,
        big_writes=True,
        max_write=131072,
        fsname="lazyfs",
    )


if __name__ == "__main__":
    main()
