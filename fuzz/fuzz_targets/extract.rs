//! `cargo fuzz run extract`: any bytes as a layer blob (a plain or gzipped tar), extracted
//! by `rbuild_cache::extract_layer`. Whatever the layer holds (absolute paths, `..`,
//! symlinks or hardlinks leading out, whiteouts, device nodes, PAX and GNU long names),
//! nothing outside the destination may change: no entry appears or goes, and no byte,
//! mode, owner, link count, time or xattr of one changes. Needs root, as extraction does
//! (mknod, chown, trusted xattrs).
//!
//! So that an escape is caught rather than done to the host, each input gets a world of
//! its own: this thread unshares its mount namespace once; per input a fresh tmpfs
//! (bounded, so a sparse-file bomb ends in ENOSPC) holds `/dest`, `/blob` and canary
//! files, and the extraction runs chrooted into it, so even an absolute symlink that is
//! followed lands on a canary. A panic restores the real root before libFuzzer's hook
//! aborts, so the crash file lands in `artifacts/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_fsutil::xattr;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The directory each input's tmpfs is mounted on (in this thread's mount namespace).
static MOUNTPOINT: OnceLock<(PathBuf, std::thread::ThreadId)> = OnceLock::new();
/// The real root and working directory, to leave the chroot by.
static REAL_ROOT: AtomicI32 = AtomicI32::new(-1);
static REAL_CWD: AtomicI32 = AtomicI32::new(-1);
static CHROOTED: AtomicBool = AtomicBool::new(false);

fn ok(r: libc::c_int, what: &str) {
    assert!(
        r == 0,
        "harness: {what}: {}",
        std::io::Error::last_os_error()
    );
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("harness paths have no NUL")
}

/// Once: a private mount namespace for this thread, the real root's fds, a panic hook
/// that leaves the chroot first.
fn mountpoint() -> &'static Path {
    let (mp, thread) = MOUNTPOINT.get_or_init(|| {
        // SAFETY: plain syscalls with valid, NUL-terminated arguments.
        unsafe {
            ok(
                libc::unshare(libc::CLONE_NEWNS),
                "unshare(CLONE_NEWNS) (run as root)",
            );
            ok(
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ),
                "make mounts private",
            );
            let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
            REAL_ROOT.store(libc::open(c"/".as_ptr(), flags), Ordering::SeqCst);
            REAL_CWD.store(libc::open(c".".as_ptr(), flags), Ordering::SeqCst);
        }
        let mp = std::env::temp_dir().join("rbuild-fuzz-extract");
        std::fs::create_dir_all(&mp).expect("harness: create mountpoint");
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            leave_chroot();
            next(info);
        }));
        (mp, std::thread::current().id())
    });
    // The namespace and the chroot belong to the thread that made them.
    assert_eq!(
        *thread,
        std::thread::current().id(),
        "harness: one fuzzing thread"
    );
    mp
}

fn enter_chroot(dir: &Path) {
    let d = cstr(dir);
    // SAFETY: plain syscalls with valid, NUL-terminated arguments.
    unsafe {
        ok(libc::chdir(d.as_ptr()), "chdir into the world");
        ok(libc::chroot(c".".as_ptr()), "chroot");
        ok(libc::chdir(c"/".as_ptr()), "chdir /");
    }
    CHROOTED.store(true, Ordering::SeqCst);
}

/// Back to the real root (a no-op outside the chroot); also called from the panic hook,
/// on whichever thread panicked (extraction threads share the chroot: CLONE_FS).
fn leave_chroot() {
    if !CHROOTED.swap(false, Ordering::SeqCst) {
        return;
    }
    // SAFETY: fds opened at init and never closed.
    unsafe {
        ok(
            libc::fchdir(REAL_ROOT.load(Ordering::SeqCst)),
            "fchdir to the real root",
        );
        ok(libc::chroot(c".".as_ptr()), "chroot back");
        ok(libc::fchdir(REAL_CWD.load(Ordering::SeqCst)), "fchdir back");
    }
}

/// A fresh bounded tmpfs on `mp`, the previous one detached.
fn fresh_tmpfs(mp: &Path) {
    let m = cstr(mp);
    // SAFETY: plain syscalls with valid, NUL-terminated arguments.
    unsafe {
        libc::umount2(m.as_ptr(), libc::MNT_DETACH); // EINVAL the first time: nothing there
        ok(
            libc::mount(
                c"rbuild-fuzz".as_ptr(),
                m.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"size=32m,nr_inodes=4096,mode=0755".as_ptr().cast(),
            ),
            "mount tmpfs",
        );
    }
}

/// The world outside the destination: things an escape would aim at.
fn populate(root: &Path, blob: &[u8]) {
    let w = |rel: &str, data: &[u8]| std::fs::write(root.join(rel), data).expect("harness");
    for d in ["dest", "outside", "outside/dir", "etc"] {
        std::fs::create_dir(root.join(d)).expect("harness: create dir");
    }
    w("blob", blob);
    w("outside/file", b"canary\n");
    w("outside/dir/file", b"canary\n");
    w("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n");
    symlink("file", root.join("outside/link")).expect("harness: symlink");
    xattr::set(&root.join("outside/file"), "user.canary", b"1").expect("harness: xattr");
}

/// Everything about every entry under `root` but `dest/`'s contents, as comparable text.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let p = root.join(rel);
        let m = std::fs::symlink_metadata(&p).expect("harness: lstat");
        let mut xattrs: Vec<(String, Option<Vec<u8>>)> = xattr::list(&p)
            .unwrap_or_default()
            .into_iter()
            .map(|k| {
                let v = xattr::get(&p, &k).ok().flatten();
                (k, v)
            })
            .collect();
        xattrs.sort();
        let content = if m.is_file() {
            std::fs::read(&p).ok()
        } else {
            None
        };
        let link = std::fs::read_link(&p).ok();
        out.insert(
            rel.to_path_buf(),
            format!(
                "mode {:o} uid {} gid {} nlink {} size {} rdev {} ino {} mtime {}.{} ctime {}.{} \
                 link {link:?} xattrs {xattrs:?} content {content:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.nlink(),
                m.size(),
                m.rdev(),
                m.ino(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ),
        );
        if m.is_dir() && rel != Path::new("dest") {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .expect("harness: read_dir")
                .map(|e| e.expect("harness: read_dir").file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    // What happens inside the destination is extraction's business; that it is still
    // the directory it was is checked separately.
    out.remove(Path::new("dest"));
    out
}

fuzz_target!(|data: &[u8]| {
    let mp = mountpoint();
    fresh_tmpfs(mp);
    populate(mp, data);
    let dest_ino = std::fs::symlink_metadata(mp.join("dest"))
        .expect("harness")
        .ino();
    let before = snapshot(mp);

    enter_chroot(mp);
    let result = rbuild_cache::extract_layer(Path::new("/blob"), Path::new("/dest"));
    leave_chroot();
    if std::env::var_os("RBUILD_FUZZ_DEBUG").is_some() {
        eprintln!("extraction: {result:?}");
    }
    if let Err(e) = &result {
        let _ = e.to_string();
    }

    let after = snapshot(mp);
    let changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            format!(
                "  /{}\n    before: {:?}\n    after:  {:?}",
                k.display(),
                before.get(k),
                after.get(k)
            )
        })
        .collect();
    assert!(
        changed.is_empty(),
        "extraction ({}) changed what is outside its destination:\n{}",
        match &result {
            Ok(()) => "succeeded".to_string(),
            Err(e) => format!("failed: {e}"),
        },
        changed.join("\n")
    );
    let d = std::fs::symlink_metadata(mp.join("dest")).expect("dest still exists");
    assert!(d.is_dir() && d.ino() == dest_ino, "dest was replaced");
});
