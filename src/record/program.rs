//! Finding the program to profile with `execvp`'s rules, for the up-front check of every backend
//! and for the native launcher alike: a name with a slash is used as given; any other name is
//! looked up in each `PATH` directory in turn (an empty entry is the current directory), and the
//! first regular file we may execute wins. A candidate that exists but cannot be executed is
//! passed over, and it is what the failure reports when nothing better is found.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The search path when `PATH` is unset.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why a program cannot be run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotRunnable {
    /// No such file (in any `PATH` directory).
    NotFound,
    /// The name is a directory.
    IsDirectory,
    /// A file that we may not execute.
    NotExecutable,
}

impl NotRunnable {
    /// The reason in words, with the fix where there is one.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NotRunnable::NotFound => "No such file or directory",
            NotRunnable::IsDirectory => "Is a directory",
            NotRunnable::NotExecutable => {
                "Permission denied (the file is not executable: chmod +x it)"
            }
        }
    }

    /// The error `execvp` would have returned.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn io_error(self) -> std::io::Error {
        std::io::Error::from_raw_os_error(match self {
            NotRunnable::NotFound => libc::ENOENT,
            NotRunnable::IsDirectory | NotRunnable::NotExecutable => libc::EACCES,
        })
    }
}

/// The file `execvp` would run for `program`, searching `PATH`.
pub(crate) fn find(program: &OsStr) -> Result<PathBuf, NotRunnable> {
    let path = std::env::var_os("PATH");
    find_in(program, path.as_deref().unwrap_or(OsStr::new(DEFAULT_PATH)))
}

/// [`find`] with the search path `path`.
fn find_in(program: &OsStr, path: &OsStr) -> Result<PathBuf, NotRunnable> {
    if program.to_string_lossy().contains('/') {
        return check(Path::new(program)).map(|()| PathBuf::from(program));
    }
    if program.is_empty() {
        return Err(NotRunnable::NotFound);
    }
    let mut refused = None;
    for candidate in std::env::split_paths(path).map(|dir| dir.join(program)) {
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(NotRunnable::NotFound) => {}
            Err(problem) => {
                refused.get_or_insert(problem);
            }
        }
    }
    Err(refused.unwrap_or(NotRunnable::NotFound))
}

/// Whether `path` is a regular file that we may execute.
fn check(path: &Path) -> Result<(), NotRunnable> {
    let meta = std::fs::metadata(path).map_err(|_| NotRunnable::NotFound)?;
    if meta.is_dir() {
        Err(NotRunnable::IsDirectory)
    } else if meta.is_file() && may_execute(path) {
        Ok(())
    } else {
        Err(NotRunnable::NotExecutable)
    }
}

#[cfg(unix)]
fn may_execute(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

#[cfg(not(unix))]
fn may_execute(_path: &Path) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn write_file(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A directory or a file without execute permission earlier in PATH is passed over, as
    /// `execvp` does; when nothing runnable is found, the refusal is reported, not "not found".
    #[cfg(unix)]
    #[test]
    fn path_search_follows_execvp() {
        let root = tempfile::tempdir().unwrap();
        let [a, b, c] = ["a", "b", "c"].map(|d| root.path().join(d));
        for dir in [&a, &b, &c] {
            std::fs::create_dir(dir).unwrap();
        }
        std::fs::create_dir(a.join("prog")).unwrap();
        write_file(&b.join("prog"), 0o644);
        write_file(&c.join("prog"), 0o755);
        let path = std::env::join_paths([&a, &b, &c]).unwrap();
        let prog = OsStr::new("prog");
        assert_eq!(find_in(prog, &path), Ok(c.join("prog")));
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_in(prog, &path), Err(NotRunnable::IsDirectory));
        assert_eq!(
            find_in(OsStr::new("missing"), &path),
            Err(NotRunnable::NotFound)
        );
        assert_eq!(find_in(OsStr::new(""), &path), Err(NotRunnable::NotFound));
    }

    /// A name with a slash is not searched for, only checked.
    #[cfg(unix)]
    #[test]
    fn a_name_with_a_slash_is_used_as_given() {
        let root = tempfile::tempdir().unwrap();
        let script = root.path().join("script");
        write_file(&script, 0o755);
        let path = OsStr::new("/nonexistent");
        assert_eq!(find_in(script.as_os_str(), path), Ok(script.clone()));
        assert_eq!(
            find_in(root.path().as_os_str(), path),
            Err(NotRunnable::IsDirectory)
        );
        assert_eq!(
            find_in(OsStr::new("./definitely-missing"), path),
            Err(NotRunnable::NotFound)
        );
    }
}
