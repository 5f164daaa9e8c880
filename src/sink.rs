//! Where the output bytes go, safely even as root in a shared directory.
//!
//! The rules, in the order [`check`] applies them before anything runs:
//!
//! - `-` is standard output (a launched program's own stdout then goes to our stderr, see
//!   [`crate::options::RecordOptions::stdout_to_stderr`]).
//! - A path that does not exist, or names a regular file, is written to a new temporary file in
//!   the same directory (created with `O_CREAT|O_EXCL|O_NOFOLLOW` under an unpredictable name),
//!   which is renamed over the path once complete: a failure never leaves half a graph, and the
//!   temporary file is removed on every failure path. A replaced file keeps its permission bits
//!   (and, for root, its owner).
//! - A path that exists and is not a regular file (a device such as `/dev/null`, a FIFO, a
//!   terminal) is opened for writing in place, never replaced.
//! - A symlink is followed like `cp` does (its target is written, the link stays), unless it sits
//!   in a sticky world-writable directory such as `/tmp` and belongs to neither us nor that
//!   directory's owner: the rule of the kernel's `fs.protected_symlinks`, applied whatever that
//!   sysctl says, at every hop of the link chain. A link to nothing is refused. A `/proc` magic
//!   link (`/dev/stdout` → `/proc/self/fd/1`) is written in place, as a shell redirection would.
//! - In such a shared directory, a regular file or FIFO owned by another user is refused too
//!   (the `protected_regular`/`protected_fifos` rule): it could be a trap that hangs the run or
//!   hands the profile to its owner.
//! - A directory, the profiled program itself and the `--perfdata` input (compared by device and
//!   inode, so hard links, symlinks and a PATH lookup do not hide them) are refused.
//!
//! Limits: symlinks in the directory part of the path are resolved by the kernel as usual; a
//! path swapped between [`check`] and [`Sink::create`] is classified again, and one that turns
//! into something else while the graph is written is refused at [`Sink::commit`].

use std::ffi::CString;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What can go wrong with the output path; each message names the cause once and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The output names a directory.
    #[error("-o {}: is a directory; name a file in it, e.g. -o {}", path.display(), path.join("flamegraph.svg").display())]
    Directory { path: PathBuf },
    /// The output is the program about to be profiled.
    #[error("-o {}: this is the program being profiled ({}); choose another output file", path.display(), program.display())]
    IsProgram { path: PathBuf, program: PathBuf },
    /// The output is the perf.data file being read.
    #[error("-o {}: this is the --perfdata input ({}); choose another output file", path.display(), input.display())]
    IsInput { path: PathBuf, input: PathBuf },
    /// A symlink another user planted in a shared directory.
    #[error(
        "-o {}: {} is a symlink owned by another user in the shared sticky directory {}; \
         not following it: remove it or choose another output file",
        path.display(), link.display(), dir.display()
    )]
    HostileSymlink {
        path: PathBuf,
        link: PathBuf,
        dir: PathBuf,
    },
    /// A file another user owns in a shared directory.
    #[error(
        "-o {}: {kind} owned by another user in the shared sticky directory {}; \
         not writing to it: choose another output file",
        path.display(), dir.display()
    )]
    ForeignFile {
        path: PathBuf,
        kind: &'static str,
        dir: PathBuf,
    },
    /// An empty path, or one ending in `/`.
    #[error("-o {:?}: not a file name; name a file such as flamegraph.svg", path)]
    NotAFileName { path: PathBuf },
    /// A symlink to nothing.
    #[error("-o {}: a symlink to {}, which does not exist; create the target or remove the link", path.display(), target.display())]
    DanglingSymlink { path: PathBuf, target: PathBuf },
    /// The output directory cannot take a new file.
    #[error("cannot write the output file in {}: {reason}; choose a writable directory", dir.display())]
    DirNotWritable { dir: PathBuf, reason: String },
    /// Creating, writing or renaming the output failed.
    #[error("cannot {action} {}: {reason}", path.display())]
    Write {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The output path was replaced by something else while we were busy.
    #[error("-o {}: it was replaced while flamegraph ran (it is now {now}); run again", path.display())]
    Changed { path: PathBuf, now: &'static str },
    /// `--open` found nothing that can show the file.
    #[error("--open: cannot open {}: {reason}; the graph is written there, open it yourself", path.display())]
    CannotOpen { path: PathBuf, reason: String },
}

/// True for `-`, meaning standard output.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// True when the graph written to `path` would land in our standard output's pipe or file: `-`,
/// or a path such as `/dev/stdout` naming the same FIFO or regular file as file descriptor 1. A
/// launched program's stdout must then go elsewhere, or it would be mixed into the graph.
pub fn shares_stdout(path: &Path) -> bool {
    use std::os::fd::AsFd;
    if is_stdout(path) {
        return true;
    }
    let Ok(ours) = io::stdout().as_fd().try_clone_to_owned().map(File::from) else {
        return false;
    };
    let (Ok(ours), Ok(theirs)) = (ours.metadata(), std::fs::metadata(path)) else {
        return false;
    };
    let t = ours.file_type();
    (t.is_file() || std::os::unix::fs::FileTypeExt::is_fifo(&t)) && id(&ours) == id(&theirs)
}

/// Where the bytes for a given `-o` argument go.
#[derive(Debug)]
enum Target {
    Stdout,
    /// An existing file opened for writing as it is; `id` is its (device, inode).
    InPlace {
        path: PathBuf,
        id: (u64, u64),
    },
    /// A missing or regular file, written through a temporary file renamed over `path` (the
    /// given path with symlinks resolved).
    Replace {
        path: PathBuf,
    },
}

fn id(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_file() => "a regular file",
        _ if t.is_dir() => "a directory",
        _ if t.is_symlink() => "a symlink",
        _ if t.is_fifo() => "a FIFO",
        _ if t.is_char_device() => "a character device",
        _ if t.is_block_device() => "a block device",
        _ => "a socket",
    }
}

/// An I/O error's text without Rust's " (os error N)" suffix: the cause, said once.
fn reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

fn write_error(action: &'static str, path: &Path, err: &io::Error) -> OutputError {
    OutputError::Write {
        action,
        path: path.to_owned(),
        reason: reason(err),
    }
}

/// The directory a file at `path` lives in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The owner of `dir` if it is shared: sticky and world-writable, like `/tmp`.
fn shared_dir_owner(dir: &Path) -> Option<u32> {
    let meta = std::fs::metadata(dir).ok()?;
    let mode = meta.mode();
    (mode & libc::S_ISVTX != 0 && mode & 0o002 != 0).then(|| meta.uid())
}

/// The kernel's `protected_symlinks`/`protected_fifos`/`protected_regular` rule: in a shared
/// directory, only what we or the directory's owner own is followed or written. Returns the
/// directory when `path` (whose lstat is `meta`) breaks it.
fn foreign_in_shared_dir(path: &Path, meta: &Metadata) -> Option<PathBuf> {
    let dir = dir_of(path);
    let owner = shared_dir_owner(dir)?;
    (meta.uid() != effective_uid() && meta.uid() != owner).then(|| dir.to_owned())
}

/// Refuses a regular file or FIFO at `path` owned by another user in a shared directory.
fn check_foreign_file(given: &Path, path: &Path, meta: &Metadata) -> Result<(), OutputError> {
    let t = meta.file_type();
    if !(t.is_file() || std::os::unix::fs::FileTypeExt::is_fifo(&t)) {
        return Ok(());
    }
    match foreign_in_shared_dir(path, meta) {
        Some(dir) => Err(OutputError::ForeignFile {
            path: given.to_owned(),
            kind: kind(meta),
            dir,
        }),
        None => Ok(()),
    }
}

/// Walks the chain of symlinks starting at `path` (at most 40 hops, as the kernel), refusing a
/// hop owned by another user in a shared directory. Stops at the first hop that is not a symlink
/// or cannot be read as a path (a `/proc` magic link).
fn check_link_chain(path: &Path) -> Result<(), OutputError> {
    let mut hop = path.to_owned();
    for _ in 0..40 {
        let Ok(meta) = std::fs::symlink_metadata(&hop) else {
            return Ok(());
        };
        if !meta.file_type().is_symlink() {
            return Ok(());
        }
        if let Some(dir) = foreign_in_shared_dir(&hop, &meta) {
            return Err(OutputError::HostileSymlink {
                path: path.to_owned(),
                link: hop,
                dir,
            });
        }
        let Ok(next) = std::fs::read_link(&hop) else {
            return Ok(());
        };
        hop = dir_of(&hop).join(next);
    }
    Ok(())
}

/// Decides where the bytes for `path` go (see the module documentation).
fn classify(path: &Path) -> Result<Target, OutputError> {
    if is_stdout(path) {
        return Ok(Target::Stdout);
    }
    if path.as_os_str().is_empty() || path.as_os_str().as_bytes().ends_with(b"/") {
        return Err(OutputError::NotAFileName {
            path: path.to_owned(),
        });
    }
    let link = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Target::Replace {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(write_error("write", path, &e)),
        Ok(m) => m,
    };
    if link.file_type().is_symlink() {
        return classify_symlink(path);
    }
    if link.is_dir() {
        return Err(OutputError::Directory {
            path: path.to_owned(),
        });
    }
    check_foreign_file(path, path, &link)?;
    Ok(if link.is_file() {
        Target::Replace {
            path: path.to_owned(),
        }
    } else {
        Target::InPlace {
            path: path.to_owned(),
            id: id(&link),
        }
    })
}

/// [`classify`] for a symlink: followed, like `cp`, unless a hop is hostile.
fn classify_symlink(path: &Path) -> Result<Target, OutputError> {
    check_link_chain(path)?;
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OutputError::DanglingSymlink {
                path: path.to_owned(),
                target: std::fs::read_link(path).unwrap_or_default(),
            })
        }
        Err(e) => return Err(write_error("write", path, &e)),
        Ok(m) => m,
    };
    if meta.is_dir() {
        return Err(OutputError::Directory {
            path: path.to_owned(),
        });
    }
    // An ordinary link leads to a real path (to rename over); a magic link does not.
    let real = std::fs::canonicalize(path)
        .ok()
        .filter(|real| std::fs::symlink_metadata(real).is_ok_and(|m| id(&m) == id(&meta)));
    if let Some(real) = real {
        check_foreign_file(path, &real, &meta)?;
        if meta.is_file() {
            return Ok(Target::Replace { path: real });
        }
    }
    Ok(Target::InPlace {
        path: path.to_owned(),
        id: id(&meta),
    })
}

/// Whether `path` is writable for our effective ids.
fn access_writable(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string; faccessat only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::W_OK,
            libc::AT_EACCESS,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates a new file in `dir` named `PREFIX` + random + `SUFFIX` with
/// `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`, mode 0666 less the umask.
fn create_exclusive(dir: &Path, prefix: &str, suffix: &str) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .make_in(dir, |path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
        })
}

/// Checks, before anything runs, that the graph can be written to `output`: refuses a
/// directory, `program` (the resolved program to launch) or `perfdata` (the input file), a
/// hostile or dangling symlink, and a directory where no file can be created.
pub fn check(
    output: &Path,
    program: Option<&Path>,
    perfdata: Option<&Path>,
) -> Result<(), OutputError> {
    let target = classify(output)?;
    let existing = match &target {
        Target::Stdout => None,
        Target::InPlace { path, .. } | Target::Replace { path } => std::fs::metadata(path).ok(),
    };
    if let Some(meta) = existing {
        let same = |other: &Path| std::fs::metadata(other).is_ok_and(|m| id(&m) == id(&meta));
        if let Some(program) = program.filter(|p| same(p)) {
            return Err(OutputError::IsProgram {
                path: output.to_owned(),
                program: program.to_owned(),
            });
        }
        if let Some(input) = perfdata.filter(|p| same(p)) {
            return Err(OutputError::IsInput {
                path: output.to_owned(),
                input: input.to_owned(),
            });
        }
    }
    match target {
        Target::Stdout => Ok(()),
        Target::InPlace { path, .. } => {
            access_writable(&path).map_err(|e| write_error("write", &path, &e))
        }
        Target::Replace { path } => {
            // A probe exactly like the real temporary file, removed when dropped.
            let dir = dir_of(&path);
            create_exclusive(dir, ".flamegraph-probe-", "")
                .map(drop)
                .map_err(|e| OutputError::DirNotWritable {
                    dir: dir.to_owned(),
                    reason: reason(&e),
                })
        }
    }
}

/// A destination being written: `Write` into it, then [`Sink::commit`]. Dropping a sink without
/// committing removes its temporary file (the output keeps its old content).
pub struct Sink {
    inner: Inner,
}

enum Inner {
    /// Standard output; `closed` once the reader went away (a broken pipe is the reader's right,
    /// as for `flamegraph -o - | head`).
    Stdout {
        out: io::Stdout,
        closed: bool,
    },
    InPlace {
        file: File,
        path: PathBuf,
    },
    Temp {
        file: tempfile::NamedTempFile,
        target: PathBuf,
    },
}

impl Sink {
    /// Opens the destination for `path` (see the module documentation for the rules).
    pub fn create(path: &Path) -> Result<Sink, OutputError> {
        let inner = match classify(path)? {
            Target::Stdout => Inner::Stdout {
                out: io::stdout(),
                closed: false,
            },
            Target::InPlace { path, id: expected } => open_in_place(path, expected)?,
            Target::Replace { path } => {
                let dir = dir_of(&path);
                // `.NAME.XXXXXX.tmp`, with NAME cut so that long names stay under NAME_MAX.
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let prefix = format!(".{}.", name.chars().take(100).collect::<String>());
                let file = create_exclusive(dir, &prefix, ".tmp").map_err(|e| {
                    OutputError::DirNotWritable {
                        dir: dir.to_owned(),
                        reason: reason(&e),
                    }
                })?;
                Inner::Temp { file, target: path }
            }
        };
        Ok(Sink { inner })
    }

    /// Finishes the output: flushes it, and for a regular file renames the temporary file over
    /// the target (refusing if the target became something else than a regular file meanwhile).
    pub fn commit(self) -> Result<(), OutputError> {
        match self.inner {
            Inner::Stdout { mut out, closed } => match out.flush() {
                Err(e) if !closed && e.kind() != io::ErrorKind::BrokenPipe => {
                    Err(write_error("write", Path::new("standard output"), &e))
                }
                _ => Ok(()),
            },
            Inner::InPlace { mut file, path } => {
                file.flush().map_err(|e| write_error("write", &path, &e))
            }
            Inner::Temp { file, target } => {
                file.as_file()
                    .sync_all()
                    .map_err(|e| write_error("write", file.path(), &e))?;
                match std::fs::symlink_metadata(&target) {
                    Ok(m) if m.is_file() => keep_mode_and_owner(file.as_file(), &m),
                    Ok(m) if !m.file_type().is_symlink() => {
                        return Err(OutputError::Changed {
                            path: target,
                            now: kind(&m),
                        })
                    }
                    _ => {}
                }
                file.persist(&target)
                    .map(drop)
                    .map_err(|e| write_error("write", &target, &e.error))
            }
        }
    }
}

/// Opens an existing non-regular file (or a magic link) for writing and checks it is still the
/// file classified (device, inode); a regular file reached through a magic link is truncated
/// as a shell's `>` would.
fn open_in_place(path: PathBuf, expected: (u64, u64)) -> Result<Inner, OutputError> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| write_error("open", &path, &e))?;
    let meta = file
        .metadata()
        .map_err(|e| write_error("open", &path, &e))?;
    if id(&meta) != expected {
        return Err(OutputError::Changed {
            path,
            now: kind(&meta),
        });
    }
    if meta.is_file() {
        file.set_len(0)
            .map_err(|e| write_error("truncate", &path, &e))?;
    }
    Ok(Inner::InPlace { file, path })
}

/// Gives the new file the permission bits (and, when we are root, the owner) of the file it
/// replaces, like `cp` onto an existing file, without set-id or sticky bits. Best effort: the
/// graph matters more.
fn keep_mode_and_owner(file: &File, old: &Metadata) {
    let _ = file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o777));
    if effective_uid() == 0 {
        let _ = std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()));
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Stdout { closed: true, .. } => Ok(buf.len()),
            Inner::Stdout { out, closed } => match out.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    *closed = true;
                    Ok(buf.len())
                }
                other => other,
            },
            Inner::InPlace { file, .. } => file.write(buf),
            Inner::Temp { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Stdout { closed: true, .. } => Ok(()),
            Inner::Stdout { out, closed } => match out.flush() {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    *closed = true;
                    Ok(())
                }
                other => other,
            },
            Inner::InPlace { file, .. } => file.flush(),
            Inner::Temp { file, .. } => file.flush(),
        }
    }
}

/// Saves `text` (folded stacks that could not be drawn) to a new `flamegraph-XXXXXX.folded`
/// beside the output (in the current directory when the output is not a regular file), else in
/// `$XDG_RUNTIME_DIR`, else in the temporary directory (an unpredictable name created with
/// `O_EXCL`, so safe there too). Returns the absolute path, or `None` if nowhere worked.
pub fn rescue(text: &str, beside: &Path) -> Option<PathBuf> {
    let near = match classify(beside) {
        Ok(Target::Replace { path }) => dir_of(&path).to_owned(),
        _ => PathBuf::from("."),
    };
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute());
    let last_resort = Some(std::env::temp_dir());
    [Some(near), runtime, last_resort]
        .into_iter()
        .flatten()
        .find_map(|dir| {
            let mut file = create_exclusive(&dir, "flamegraph-", ".folded").ok()?;
            file.write_all(text.as_bytes()).ok()?;
            let (_, path) = file.keep().ok()?;
            Some(std::path::absolute(&path).unwrap_or(path))
        })
}

/// `--open`: shows the written file with the desktop's default program, or says in one line why
/// nothing can (no graphical session, not a regular file) and where the file is.
pub fn open_in_viewer(path: &Path) -> Result<(), OutputError> {
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let cannot = |reason: String| OutputError::CannotOpen {
        path: shown.clone(),
        reason,
    };
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Err(cannot("it is not a regular file".into()));
    }
    if cfg!(target_os = "linux") && !has_graphical_session() {
        return Err(cannot(
            "no graphical session to show it in (DISPLAY, WAYLAND_DISPLAY and BROWSER are unset)"
                .into(),
        ));
    }
    opener::open(path).map_err(|e| cannot(e.to_string().replace('\n', " ")))
}

/// Whether xdg-open has anything to start (opener never reports its failures: it runs detached).
fn has_graphical_session() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "WSL_DISTRO_NAME"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_drops_the_os_error_suffix() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(reason(&e), "No such file or directory");
        assert_eq!(reason(&io::Error::other("plain")), "plain");
    }

    #[test]
    fn replace_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("g.svg");
        std::fs::write(&out, "old").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut sink = Sink::create(&out).unwrap();
        sink.write_all(b"new").unwrap();
        sink.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
        let mode = std::fs::metadata(&out).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640, "the replaced file's mode is kept");
        // Dropped without commit: the old content stays, the temporary file goes.
        let mut sink = Sink::create(&out).unwrap();
        sink.write_all(b"half").unwrap();
        drop(sink);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn symlink_to_a_regular_file_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.svg");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.svg");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        check(&link, None, None).unwrap();
        let mut sink = Sink::create(&link).unwrap();
        sink.write_all(b"new").unwrap();
        sink.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let e = check(dir.path(), None, None).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let input = dir.path().join("perf.data");
        std::fs::write(&input, "x").unwrap();
        let e = check(&input, None, Some(&input)).unwrap_err().to_string();
        assert!(e.contains("--perfdata input"), "{e}");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("none"), &dangling).unwrap();
        let e = check(&dangling, None, None).unwrap_err().to_string();
        assert!(e.contains("which does not exist"), "{e}");
        let e = check(Path::new("/nonexistent-dir/x.svg"), None, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot write the output file in /nonexistent-dir: No such file or directory; \
             choose a writable directory"
        );
    }

    #[test]
    fn names_that_are_not_files_are_refused() {
        for bad in ["", "out/", "/"] {
            assert!(check(Path::new(bad), None, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn foreign_files_in_a_shared_directory_are_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "needs root (chown) and CI=true: run the tests as root on CI"
            );
            eprintln!("skipping: needs root to give a file to another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let planted = dir.path().join("out.svg");
        std::fs::write(&planted, "theirs").unwrap();
        std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
        let e = check(&planted, None, None).unwrap_err().to_string();
        assert!(e.contains("a regular file owned by another user"), "{e}");
        assert!(Sink::create(&planted).is_err());
        // The same file owned by us is replaced as usual.
        std::os::unix::fs::chown(&planted, Some(0), Some(0)).unwrap();
        check(&planted, None, None).unwrap();
    }

    #[test]
    fn rescue_goes_beside_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let saved = rescue("a;b 1\n", &dir.path().join("x.svg")).unwrap();
        assert_eq!(saved.parent(), Some(dir.path()));
        let name = saved.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("flamegraph-") && name.ends_with(".folded"));
        assert_eq!(std::fs::read_to_string(&saved).unwrap(), "a;b 1\n");
    }
}
