#!/usr/bin/python3
# A FUSE file system that folds names, as ext4 with casefold, vfat, CIFS or a case-insensitive ZFS
# do: `a/D` finds `a/d` when no `a/D` exists, in case and in Unicode form. It passes everything
# through to a backing folder; the tests mount it (as root) where a kernel without CONFIG_UNICODE
# has no such file system of its own.
#
#   /usr/bin/python3 test/helpers/foldfs.py BACKING MOUNTPOINT [name-inodes]   (Debian: python3-fusepy)
#
# name-inodes: each spelling of a name gets its own inode number (libfuse numbers nodes by name), as
# on CIFS with noserverino; by default the backing folder's inode numbers pass through.
#
# Runs in the foreground; ends when the mount point is unmounted. No kernel caching of names or
# attributes, so an entry removed under one spelling is gone under the other at once.
import errno
import os
import sys
import unicodedata

from fusepy import FUSE, FuseOSError, Operations


def fold(name):
    return unicodedata.normalize('NFC', name).casefold()


class FoldFS(Operations):
    def __init__(self, root):
        self.root = os.path.realpath(root)

    def _match(self, real_dir, name):
        """The entry of real_dir whose folded name is name's (the exact one first), or name."""
        if os.path.lexists(os.path.join(real_dir, name)):
            return name
        try:
            for entry in os.listdir(real_dir):
                if fold(entry) == fold(name):
                    return entry
        except OSError:
            pass
        return name

    def _real(self, path):
        real = self.root
        for part in [p for p in path.split('/') if p]:
            real = os.path.join(real, self._match(real, part))
        return real

    def getattr(self, path, fh=None):
        st = os.lstat(self._real(path)) if fh is None else os.fstat(fh)
        keys = ('st_mode', 'st_ino', 'st_dev', 'st_nlink', 'st_uid', 'st_gid', 'st_size',
                'st_atime', 'st_mtime', 'st_ctime')
        out = {k: getattr(st, k) for k in keys}
        out.update(st_atime=st.st_atime_ns / 1e9, st_mtime=st.st_mtime_ns / 1e9, st_ctime=st.st_ctime_ns / 1e9)
        return out

    def access(self, path, amode):
        if not os.access(self._real(path), amode):
            raise FuseOSError(errno.EACCES)

    def readdir(self, path, fh):
        return ['.', '..'] + os.listdir(self._real(path))

    def readlink(self, path):
        return os.readlink(self._real(path))

    def mkdir(self, path, mode):
        os.mkdir(self._real(path), mode)

    def rmdir(self, path):
        os.rmdir(self._real(path))

    def unlink(self, path):
        os.unlink(self._real(path))

    def symlink(self, target, source):
        os.symlink(source, self._real(target))

    def rename(self, old, new):
        os.rename(self._real(old), self._real(new))

    def link(self, target, source):
        os.link(self._real(source), self._real(target))

    def chmod(self, path, mode):
        os.chmod(self._real(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self._real(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._real(path), times, follow_symlinks=False)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._real(path), length)

    def statfs(self, path):
        sv = os.statvfs(self._real(path))
        keys = ('f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail', 'f_ffree', 'f_files',
                'f_flag', 'f_frsize', 'f_namemax')
        return {k: getattr(sv, k) for k in keys}

    def open(self, path, flags):
        return os.open(self._real(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        os.fsync(fh)

    def release(self, path, fh):
        os.close(fh)


if __name__ == '__main__':
    backing, mountpoint = sys.argv[1], sys.argv[2]
    name_inodes = sys.argv[3:] == ['name-inodes']
    FUSE(FoldFS(backing), mountpoint, foreground=True, nothreads=True, use_ino=not name_inodes,
         entry_timeout=0, attr_timeout=0, negative_timeout=0, fsname='rch-foldfs')
