#!/usr/bin/env python3
"""Writes the extract target's seed layers (small tars, one hostile idea each) into
extract/. Run from fuzz/seeds/ after changing it; the output is checked in."""
import gzip
import io
import os
import tarfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "extract")


def entry(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, dev=(0, 0), pax=None):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode, ti.mtime = kind, link, mode, 1700000000
    ti.devmajor, ti.devminor = dev
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    if pax:
        ti.pax_headers = pax
    return ti, data


def layer(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if ti.size else None)
    # Without tarfile's record padding: two zero blocks end the archive.
    b = buf.getvalue()
    end = len(b)
    while end >= 512 and b[end - 512:end] == bytes(512):
        end -= 512
    return b[:end] + bytes(1024)


D, S, L, H = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE
# One hostile idea per seed: extraction stops at the first refused entry.
seeds = {
    # Every ordinary kind of entry, whiteouts included.
    "ordinary.tar": [
        entry("a/", D, mode=0o755),
        entry("a/f", data=b"hello\n"),
        entry("a/l", S, link="f"),
        entry("a/h", L, link="a/f"),
        entry("a/fifo", H),
        entry("a/null", tarfile.CHRTYPE, dev=(1, 3)),
        entry("a/blk", tarfile.BLKTYPE, dev=(7, 0)),
        entry("a/.wh.gone"),
        entry("b/.wh..wh..opq"),
        entry("b/.wh..wh.plnk"),
        entry("setuid", data=b"x", mode=0o4755),
    ],
    "absolute.tar": [entry("/outside/file", data=b"evil\n")],
    "dotdot.tar": [entry("a/../../outside/file", data=b"evil\n")],
    # A symlink pointing out, then an entry through it.
    "symlink-abs.tar": [entry("abs", S, link="/outside"), entry("abs/file", data=b"evil\n")],
    "symlink-rel.tar": [entry("rel", S, link="../outside"), entry("rel/dir/new", data=b"x")],
    "symlink-up.tar": [entry("up", S, link="../../../.."), entry("up/etc/passwd", data=b"x")],
    # Symlinks that stay inside, chained, and a loop.
    "symlink-in.tar": [
        entry("d/", D),
        entry("s1", S, link="d"),
        entry("s2", S, link="s1/../s1"),
        entry("s2/f", data=b"ok\n"),
        entry("loop", S, link="loop"),
        entry("loop/f", data=b"x"),
    ],
    # Hardlinks whose target is outside, directly or through a symlink.
    "hardlink-abs.tar": [entry("h", L, link="/outside/file")],
    "hardlink-rel.tar": [entry("h", L, link="../outside/file")],
    "hardlink-via-symlink.tar": [entry("s", S, link="../outside"), entry("h", L, link="s/file")],
    "hardlink-to-symlink.tar": [entry("s", S, link="/outside/file"), entry("h", L, link="s")],
    # A directory replaced by a symlink after it was written (directory modes and times
    # are applied at the end), and one replaced by a file.
    "dir-then-symlink.tar": [entry("d/", D, mode=0o700), entry("d", S, link="../outside")],
    "dir-then-file.tar": [entry("e/", D), entry("e/sub/", D, mode=0o711), entry("e", data=b"x")],
    # Whiteouts of odd names and whiteouts aimed through symlinks.
    "whiteout-invalid.tar": [entry("a/.wh...")],
    "whiteout-via-symlink.tar": [entry("s", S, link="/outside"), entry("s/.wh.file")],
    "opaque-via-symlink.tar": [entry("t", S, link="../outside"), entry("t/.wh..wh..opq")],
    # Device nodes over existing paths and through symlinks.
    "devices.tar": [
        entry("mem", tarfile.CHRTYPE, dev=(1, 1), mode=0o666),
        entry("sda", tarfile.BLKTYPE, dev=(8, 0)),
        entry("wh", tarfile.CHRTYPE, dev=(0, 0)),
        entry("s", S, link="/etc"),
        entry("s/passwd", tarfile.CHRTYPE, dev=(1, 1)),
    ],
    # PAX headers: a path override climbing out, overlay's own xattrs, a long name.
    "pax-path.tar": [entry("innocent", data=b"x", pax={"path": "../outside/pax"})],
    "pax-xattrs.tar": [
        entry("x", data=b"x", pax={"SCHILY.xattr.trusted.overlay.opaque": "y",
                                   "SCHILY.xattr.user.k": "v"}),
        entry("d/" * 60 + "long", data=b"x"),
    ],
}

os.makedirs(OUT, exist_ok=True)
for name, entries in seeds.items():
    fmt = tarfile.PAX_FORMAT if name.startswith("pax") else tarfile.GNU_FORMAT
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(layer(entries, fmt))
with open(os.path.join(OUT, "ordinary.tar.gz"), "wb") as f:
    f.write(gzip.compress(layer(seeds["ordinary.tar"]), mtime=0))
