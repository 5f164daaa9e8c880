//! debuginfod: a binary's debug info (or, for a recording made elsewhere, the binary itself)
//! fetched by GNU build-id from the servers `DEBUGINFOD_URLS` names, the last place looked after
//! the files on disk (see `debugfile.rs` and `locate.rs`).
//!
//! - **Servers**: `DEBUGINFOD_URLS`, space-separated `http://` and `https://` URLs, asked in
//!   order with `GET URL/buildid/HEX/debuginfo` (or `/executable`).
//! - **Cache**: elfutils' client cache, `$DEBUGINFOD_CACHE_PATH`, else
//!   `$XDG_CACHE_HOME/debuginfod_client`, else `$HOME/.cache/debuginfod_client`, with its layout
//!   (`CACHE/HEX/debuginfo`, `CACHE/HEX/executable`), so that gdb, perf and this tool share what
//!   either fetched. A file in the cache is used without asking a server if it is an ELF file
//!   with the build-id.
//! - **Safety** (we may run as root): the cache directory must be ours (owned by the effective
//!   user, not writable by others) and is not followed if it is a symlink; below it nothing is
//!   followed (every lookup is made relative to the opened directory, with `O_NOFOLLOW`), only
//!   regular files are read, and an existing non-regular file is never replaced. A download is
//!   streamed to a temporary file in the cache directory (unpredictable name, `O_EXCL`) and
//!   renamed into place only once it is an ELF file with the build-id asked for.
//! - **Bounds**: each request times out when connecting, waiting for the answer or reading
//!   stalls for `DEBUGINFOD_TIMEOUT` seconds (default [`DEFAULT_TIMEOUT`]); all requests of a run
//!   share [`BUDGET`]; a file over `DEBUGINFOD_MAXSIZE` bytes (default [`DEFAULT_MAX_SIZE`]) is not
//!   fetched. A server that fails once (no connection, an error status, a bad file) is not asked
//!   again in the run, and gets one note.
//! - **When**: a lookup blocks its caller. The collector's symbolizer thread makes the first
//!   lookups while the program is still recorded (see `collect/warmer.rs`); a later lookup of the
//!   same build-id waits for that download rather than starting another.
//!
//! Off unless [`configure`] turns it on (the command line does, unless `--no-debuginfod`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use memmap2::Mmap;
use object::Object;

use super::private_dir::{
    beneath, check_ours, fd_path, open_beneath, open_cache_root, open_dir_nofollow,
};

/// Each request's connect, first-answer and per-read timeout unless `DEBUGINFOD_TIMEOUT` says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest file fetched unless `DEBUGINFOD_MAXSIZE` says.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;
/// The time all requests of a run may take together: a slow or dead server delays a profile
/// by at most this much.
pub const BUDGET: Duration = Duration::from_secs(60);

/// What is fetched for a build-id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Artifact {
    /// The separate debug file (symbols and DWARF).
    DebugInfo,
    /// The binary itself (for a recording made on another machine).
    Executable,
}

impl Artifact {
    /// The name in request URLs and in the cache.
    fn name(self) -> &'static str {
        match self {
            Artifact::DebugInfo => "debuginfo",
            Artifact::Executable => "executable",
        }
    }
}

/// Where and how to fetch, from the environment (see [`Settings::from_env`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Server URLs, without a trailing `/`.
    pub urls: Vec<String>,
    /// The client cache directory.
    pub cache: PathBuf,
    /// Per-request timeout for connecting, for the answer and for each read.
    pub timeout: Duration,
    /// The largest file fetched, in bytes.
    pub max_size: u64,
    /// The time all requests may take together.
    pub budget: Duration,
}

impl Settings {
    /// The settings `DEBUGINFOD_URLS`, `DEBUGINFOD_CACHE_PATH`, `XDG_CACHE_HOME`, `HOME`,
    /// `DEBUGINFOD_TIMEOUT` and `DEBUGINFOD_MAXSIZE` give, with one note per URL that is not
    /// `http://` or `https://`; `None` when no URL is set (or no cache directory can be named).
    pub fn from_env() -> (Option<Settings>, Vec<String>) {
        Self::from_vars(|name| std::env::var_os(name))
    }

    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> (Option<Settings>, Vec<String>) {
        let text = |name: &str| var(name).map(|v| v.to_string_lossy().into_owned());
        let mut notes = Vec::new();
        let mut urls = Vec::new();
        for url in text("DEBUGINFOD_URLS")
            .unwrap_or_default()
            .split_whitespace()
        {
            if url.starts_with("http://") || url.starts_with("https://") {
                urls.push(url.trim_end_matches('/').to_owned());
            } else {
                notes.push(format!(
                    "debuginfod: {url} in DEBUGINFOD_URLS is not an http:// or https:// URL; \
                     skipped"
                ));
            }
        }
        let nonempty = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cache = nonempty("DEBUGINFOD_CACHE_PATH")
            .or_else(|| nonempty("XDG_CACHE_HOME").map(|d| d.join("debuginfod_client")))
            .or_else(|| nonempty("HOME").map(|d| d.join(".cache/debuginfod_client")));
        let positive = |name: &str| {
            text(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&n| n > 0)
        };
        let settings = match cache {
            Some(cache) if !urls.is_empty() => Some(Settings {
                urls,
                cache,
                timeout: positive("DEBUGINFOD_TIMEOUT")
                    .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
                max_size: positive("DEBUGINFOD_MAXSIZE").unwrap_or(DEFAULT_MAX_SIZE),
                budget: BUDGET,
            }),
            _ => None,
        };
        (settings, notes)
    }
}

/// The client of this process, if [`configure`] turned it on.
static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Turns debuginfod on (from the environment, see [`Settings::from_env`]) or off for the lookups
/// that follow. Notes from an earlier configuration are dropped.
pub fn configure(enabled: bool) {
    let client = enabled
        .then(Settings::from_env)
        .and_then(|(settings, notes)| {
            let client = Client::new(settings?);
            lock(&client.state).notes = notes;
            Some(Arc::new(client))
        });
    *lock(&CLIENT) = client;
}

/// The one-line notes of the lookups so far (servers that failed, files too large, the budget
/// used up), each once; they are cleared.
pub fn take_notes() -> Vec<String> {
    let client = lock(&CLIENT).clone();
    client.map_or_else(Vec::new, |c| std::mem::take(&mut lock(&c.state).notes))
}

/// The debug file of `build_id` from the cache or the servers, mapped, with its cache path.
pub(crate) fn debuginfo(build_id: &[u8]) -> Option<(PathBuf, Mmap)> {
    let client = lock(&CLIENT).clone()?;
    client.find(build_id, Artifact::DebugInfo)
}

/// The cache path of the binary of `build_id`, fetched into the cache if needed.
pub(crate) fn executable(build_id: &[u8]) -> Option<PathBuf> {
    let client = lock(&CLIENT).clone()?;
    Some(client.find(build_id, Artifact::Executable)?.0)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A debuginfod client: the servers, the cache, and what was fetched in this run.
pub struct Client {
    settings: Settings,
    agent: ureq::Agent,
    /// The cache directory, opened (and created) on first use; `None` if unusable (noted).
    cache: OnceLock<Option<File>>,
    state: Mutex<State>,
    /// Signalled when a download ends.
    done: Condvar,
}

/// A file: its build-id and what it is.
type Key = (Box<[u8]>, Artifact);

/// Where the lookup of a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    /// In the cache or being downloaded: wait for it.
    Running,
    /// In the cache.
    Found,
    /// Nowhere (or the download failed): not asked again in the run.
    Missing,
}

#[derive(Default)]
struct State {
    /// Per file looked up: where its lookup is.
    lookups: HashMap<Key, Lookup>,
    /// Per server (as in `settings.urls`): failed once, not asked again.
    failed: Vec<bool>,
    /// Time taken by requests so far.
    spent: Duration,
    budget_noted: bool,
    notes: Vec<String>,
}

/// What asking one server gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    /// The file is in the cache.
    Fetched,
    /// Not there (or the server is not asked): ask the next one.
    NotFound,
    /// Ask no other server for this file.
    GiveUp,
}

/// Why a request gave nothing.
enum Failure {
    /// The server is broken for us (no connection, error status, bad file): not asked again.
    Server(String),
    /// Too large (its size if the server said it): no server is asked for this file.
    TooLarge(Option<u64>),
    /// Our side (the cache cannot be written): no server is asked for this file.
    Local(String),
}

impl Client {
    /// A client with these settings; nothing is opened or asked yet.
    pub fn new(settings: Settings) -> Self {
        let timeout = Some(settings.timeout);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_resolve(timeout)
            .timeout_connect(timeout)
            .timeout_recv_response(timeout)
            .timeout_per_read(timeout)
            .user_agent(format!("flamegraph/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let state = State {
            failed: vec![false; settings.urls.len()],
            ..State::default()
        };
        Client {
            settings,
            agent,
            cache: OnceLock::new(),
            state: Mutex::new(state),
            done: Condvar::new(),
        }
    }

    /// The file of `build_id` (its significant bytes) from the cache, else downloaded; checked to
    /// be an ELF file with that build-id. One download per file and run: a caller asking while
    /// it runs waits for it (at most the budget).
    pub fn find(&self, build_id: &[u8], artifact: Artifact) -> Option<(PathBuf, Mmap)> {
        if build_id.is_empty() {
            return None;
        }
        let key: Key = (build_id.into(), artifact);
        let deadline = Instant::now() + self.settings.budget + Duration::from_secs(1);
        let mut state = lock(&self.state);
        loop {
            match state.lookups.get(&key) {
                None => break,
                Some(Lookup::Missing) => return None,
                Some(Lookup::Found) => {
                    drop(state);
                    return self.cached(build_id, artifact);
                }
                Some(Lookup::Running) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    state = (self.done.wait_timeout(state, left))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        state.lookups.insert(key.clone(), Lookup::Running);
        drop(state);
        // Marks the download done even if it panics, so that no one waits for it.
        let mut running = Running {
            client: self,
            key,
            found: false,
        };
        let found = self.cached(build_id, artifact).or_else(|| {
            self.download(build_id, artifact)?;
            self.cached(build_id, artifact)
        });
        running.found = found.is_some();
        found
    }

    /// The cache directory, created (mode 0700) and opened on first use, if it is ours.
    fn cache_dir(&self) -> Option<&File> {
        let dir = self.cache.get_or_init(|| {
            let opened = open_cache_root(&self.settings.cache);
            if let Err(why) = &opened {
                self.note(format!(
                    "debuginfod: cache {} not used: {why}",
                    self.settings.cache.display()
                ));
            }
            opened.ok()
        });
        dir.as_ref()
    }

    /// The cached file, if it is a regular ELF file of ours with the build-id.
    fn cached(&self, build_id: &[u8], artifact: Artifact) -> Option<(PathBuf, Mmap)> {
        let hex = to_hex(build_id);
        let dir = open_dir_nofollow(&beneath(self.cache_dir()?, &hex)).ok()?;
        let file = open_beneath(&dir, artifact.name()).ok()?;
        let meta = file.metadata().ok()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if !meta.is_file() || meta.len() == 0 || (meta.uid() != euid && meta.uid() != 0) {
            return None;
        }
        // SAFETY: read-only private map of a file in our own cache; files there are replaced by
        // rename, never truncated in place (by us or by elfutils).
        let map = unsafe { Mmap::map(&file) }.ok()?;
        has_build_id(&map, build_id).then(|| {
            let path = self.settings.cache.join(&hex).join(artifact.name());
            (path, map)
        })
    }

    /// Asks each server in turn until one has the file; `Some` once it is in the cache.
    fn download(&self, build_id: &[u8], artifact: Artifact) -> Option<()> {
        let hex = to_hex(build_id);
        let dir = self.entry_dir(&hex)?;
        let mut fetched = false;
        for server in 0..self.settings.urls.len() {
            match self.ask(server, &hex, artifact, build_id, &dir) {
                Asked::Fetched => fetched = true,
                Asked::NotFound => continue,
                Asked::GiveUp => {}
            }
            break;
        }
        if !fetched {
            // Leaves no empty directory behind (fails, as it should, if something is in it).
            let _ = std::fs::remove_dir(beneath(self.cache_dir()?, &hex));
        }
        fetched.then_some(())
    }

    /// Asks server `server` (unless it failed before or the budget is used up), noting failures.
    fn ask(
        &self,
        server: usize,
        hex: &str,
        artifact: Artifact,
        build_id: &[u8],
        dir: &File,
    ) -> Asked {
        let url = &self.settings.urls[server];
        let remaining = match self.time_left(server) {
            Ok(remaining) => remaining,
            Err(asked) => return asked,
        };
        let started = Instant::now();
        let outcome = self.request(url, hex, artifact, build_id, dir, remaining);
        let mut state = lock(&self.state);
        state.spent += started.elapsed();
        match outcome {
            Ok(true) => Asked::Fetched,
            Ok(false) => Asked::NotFound,
            Err(Failure::Server(why)) => {
                state.failed[server] = true;
                state.notes.push(format!(
                    "debuginfod: {url} failed: {why}; not asked again in this run"
                ));
                Asked::NotFound
            }
            Err(Failure::TooLarge(size)) => {
                let size =
                    size.map_or_else(|| "is over".into(), |n| format!("is {}, over", bytes(n)));
                state.notes.push(format!(
                    "debuginfod: the {} of build-id {hex} {size} the limit of {}: not fetched \
                     (raise DEBUGINFOD_MAXSIZE, in bytes)",
                    artifact.name(),
                    bytes(self.settings.max_size)
                ));
                Asked::GiveUp
            }
            Err(Failure::Local(why)) => {
                state.notes.push(format!("debuginfod: {why}"));
                Asked::GiveUp
            }
        }
    }

    /// The time a request to `server` may take: what is left of the budget; `Err` if the server
    /// failed before or the budget is used up (noted once).
    fn time_left(&self, server: usize) -> Result<Duration, Asked> {
        let mut state = lock(&self.state);
        if state.failed[server] {
            return Err(Asked::NotFound);
        }
        let remaining = self.settings.budget.checked_sub(state.spent);
        if let Some(remaining) = remaining.filter(|r| !r.is_zero()) {
            return Ok(remaining);
        }
        if !std::mem::replace(&mut state.budget_noted, true) {
            state.notes.push(format!(
                "debuginfod: the {} s that downloads may take in a run are used up; the files \
                 not fetched yet keep unnamed frames (run again: what was fetched is cached)",
                self.settings.budget.as_secs()
            ));
        }
        Err(Asked::GiveUp)
    }

    /// `CACHE/HEX`, created (mode 0700) if needed, opened without following a symlink.
    fn entry_dir(&self, hex: &str) -> Option<File> {
        let root = self.cache_dir()?;
        let path = beneath(root, hex);
        let made = std::fs::DirBuilder::new().mode(0o700).create(&path);
        if let Some(e) = made
            .err()
            .filter(|e| e.kind() != std::io::ErrorKind::AlreadyExists)
        {
            self.note(format!(
                "debuginfod: cannot create {}: {e}",
                self.settings.cache.join(hex).display()
            ));
            return None;
        }
        let dir = open_dir_nofollow(&path).and_then(|dir| check_ours(&dir).map(|()| dir));
        match dir {
            Ok(dir) => Some(dir),
            Err(why) => {
                self.note(format!(
                    "debuginfod: {} not used: {why}",
                    self.settings.cache.join(hex).display()
                ));
                None
            }
        }
    }

    /// One request: `Ok(true)` once the file is in the cache, `Ok(false)` if the server does not
    /// have it.
    fn request(
        &self,
        url: &str,
        hex: &str,
        artifact: Artifact,
        build_id: &[u8],
        dir: &File,
        remaining: Duration,
    ) -> Result<bool, Failure> {
        let uri = format!("{url}/buildid/{hex}/{}", artifact.name());
        let response = (self.agent.get(&uri).config())
            .timeout_global(Some(remaining))
            .build()
            .call()
            .map_err(|e| Failure::Server(e.to_string()))?;
        match response.status().as_u16() {
            200 => {}
            // Not there; or (406) not in a form it can send.
            404 | 406 | 410 => return Ok(false),
            status => {
                let why = format!("HTTP {status} for the {} of {hex}", artifact.name());
                return Err(Failure::Server(why));
            }
        }
        let temp = self.receive(response.into_body(), hex, artifact, dir)?;
        self.install(temp, hex, artifact, build_id, dir)?;
        Ok(true)
    }

    /// Streams `body` to a new temporary file in `dir` (`CACHE/HEX`), at most the size limit.
    fn receive(
        &self,
        mut body: ureq::Body,
        hex: &str,
        artifact: Artifact,
        dir: &File,
    ) -> Result<tempfile::NamedTempFile, Failure> {
        let max = self.settings.max_size;
        if let Some(size) = body.content_length().filter(|&size| size > max) {
            return Err(Failure::TooLarge(Some(size)));
        }
        let mut temp = tempfile::Builder::new()
            .prefix(".flamegraph-")
            .tempfile_in(fd_path(dir))
            .map_err(|e| self.local(hex, "create a file", e))?;
        let mut reader = body.as_reader().take(max + 1);
        let copied = std::io::copy(&mut reader, temp.as_file_mut()).map_err(|e| {
            // A read error is the server's (or the network's), a write error ours.
            match e.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::PermissionDenied => {
                    self.local(hex, "write", e)
                }
                _ => Failure::Server(format!("sending the {} of {hex}: {e}", artifact.name())),
            }
        })?;
        if copied > max {
            return Err(Failure::TooLarge(None));
        }
        temp.as_file_mut()
            .flush()
            .map_err(|e| self.local(hex, "write", e))?;
        Ok(temp)
    }

    /// Renames the downloaded `temp` to `CACHE/HEX/ARTIFACT` if it is an ELF file with the
    /// build-id, read-only (as elfutils leaves its files), never over a non-regular file.
    fn install(
        &self,
        temp: tempfile::NamedTempFile,
        hex: &str,
        artifact: Artifact,
        build_id: &[u8],
        dir: &File,
    ) -> Result<(), Failure> {
        // SAFETY: a read-only map of the temporary file we just wrote, which only we know.
        let map = unsafe { Mmap::map(temp.as_file()) }.map_err(|e| self.local(hex, "read", e))?;
        if !has_build_id(&map, build_id) {
            return Err(Failure::Server(format!(
                "the {} of {hex} it sent is not an ELF file with that build-id",
                artifact.name()
            )));
        }
        drop(map);
        let name = artifact.name();
        if let Ok(meta) = std::fs::symlink_metadata(beneath(dir, name)) {
            if !meta.is_file() {
                let path = self.settings.cache.join(hex).join(name);
                return Err(Failure::Local(format!(
                    "{} is not a regular file: not replaced",
                    path.display()
                )));
            }
        }
        let read_only = std::os::unix::fs::PermissionsExt::from_mode(0o400);
        (temp.as_file().set_permissions(read_only)).map_err(|e| self.local(hex, "write", e))?;
        temp.persist(beneath(dir, name))
            .map_err(|e| self.local(hex, "rename a file", e.error))?;
        Ok(())
    }

    /// A failure on our side in `CACHE/HEX`.
    fn local(&self, hex: &str, what: &str, e: std::io::Error) -> Failure {
        let dir = self.settings.cache.join(hex);
        Failure::Local(format!("cannot {what} in {}: {e}", dir.display()))
    }

    fn note(&self, note: String) {
        lock(&self.state).notes.push(note);
    }
}

/// Ends a download: records its result and wakes those waiting for it (also on a panic).
struct Running<'a> {
    client: &'a Client,
    key: Key,
    found: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.client.state);
        let lookup = if self.found {
            Lookup::Found
        } else {
            Lookup::Missing
        };
        state.lookups.insert(self.key.clone(), lookup);
        drop(state);
        self.client.done.notify_all();
    }
}

/// True if `bytes` are an ELF file whose GNU build-id is `build_id`.
fn has_build_id(bytes: &[u8], build_id: &[u8]) -> bool {
    object::File::parse(bytes).is_ok_and(|file| {
        file.format() == object::BinaryFormat::Elf
            && file.build_id().ok().flatten() == Some(build_id)
    })
}

/// `n` bytes for a note: `1.5 MiB`, `1000 bytes`.
fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{n} bytes")
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = (pairs.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            (pairs.iter())
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn settings_follow_elfutils() {
        let (none, _) = Settings::from_vars(vars(&[("HOME", "/home/u")]));
        assert_eq!(none, None);
        let (settings, notes) = Settings::from_vars(vars(&[
            (
                "DEBUGINFOD_URLS",
                " https://a.example/  ftp://b.example http://c:8002 ",
            ),
            ("HOME", "/home/u"),
            ("DEBUGINFOD_TIMEOUT", "3"),
        ]));
        let settings = settings.unwrap();
        assert_eq!(settings.urls, ["https://a.example", "http://c:8002"]);
        assert_eq!(
            settings.cache,
            Path::new("/home/u/.cache/debuginfod_client")
        );
        assert_eq!(settings.timeout, Duration::from_secs(3));
        assert_eq!(settings.max_size, DEFAULT_MAX_SIZE);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("ftp://b.example"), "{notes:?}");
        let (settings, _) = Settings::from_vars(vars(&[
            ("DEBUGINFOD_URLS", "http://x"),
            ("HOME", "/home/u"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("DEBUGINFOD_MAXSIZE", "1000"),
            ("DEBUGINFOD_TIMEOUT", "soon"),
        ]));
        let settings = settings.unwrap();
        assert_eq!(settings.cache, Path::new("/xdg/debuginfod_client"));
        assert_eq!(settings.max_size, 1000);
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        let (settings, _) = Settings::from_vars(vars(&[
            ("DEBUGINFOD_URLS", "http://x"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("DEBUGINFOD_CACHE_PATH", "/cache"),
        ]));
        assert_eq!(settings.unwrap().cache, Path::new("/cache"));
    }

    fn client(cache: &Path, urls: &[&str]) -> Client {
        Client::new(Settings {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            cache: cache.to_owned(),
            timeout: Duration::from_secs(2),
            max_size: DEFAULT_MAX_SIZE,
            budget: Duration::from_secs(5),
        })
    }

    /// This test binary's build-id, and the binary copied into `cache` as elfutils would keep it.
    fn seed_cache(cache: &Path, artifact: Artifact) -> Vec<u8> {
        let exe = std::env::current_exe().unwrap();
        let id = super::super::locate::file_build_id(&exe).expect("a build-id");
        let dir = cache.join(to_hex(&id));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&exe, dir.join(artifact.name())).unwrap();
        id
    }

    #[test]
    fn cached_files_are_used_without_a_server() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let id = seed_cache(&cache, Artifact::Executable);
        // A loopback port nothing listens on: it must not be asked for a cached file.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let dead = format!("http://127.0.0.1:{port}");
        let client = client(&cache, &[&dead]);
        let (path, _) = client.find(&id, Artifact::Executable).expect("cached");
        assert_eq!(path, cache.join(to_hex(&id)).join("executable"));
        assert!(lock(&client.state).notes.is_empty());
        // Another build-id is not in the cache: the dead server fails once, with one note.
        let other = [0x5a; 20];
        assert!(client.find(&other, Artifact::DebugInfo).is_none());
        assert!(client.find(&[0x5b; 20], Artifact::DebugInfo).is_none());
        let notes = std::mem::take(&mut lock(&client.state).notes);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains(&dead), "{notes:?}");
    }

    #[test]
    fn a_file_with_another_build_id_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let id = seed_cache(&cache, Artifact::DebugInfo);
        let mut wrong = id.clone();
        wrong[0] ^= 1;
        let wrong_dir = cache.join(to_hex(&wrong));
        std::fs::rename(cache.join(to_hex(&id)), &wrong_dir).unwrap();
        let client = client(&cache, &[]);
        assert!(client.find(&wrong, Artifact::DebugInfo).is_none());
    }

    #[test]
    fn symlinks_in_the_cache_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let id = seed_cache(&cache, Artifact::DebugInfo);
        let hex = to_hex(&id);
        // The file itself a symlink to a good copy: not used.
        let real = tmp.path().join("real");
        std::fs::rename(cache.join(&hex).join("debuginfo"), &real).unwrap();
        std::os::unix::fs::symlink(&real, cache.join(&hex).join("debuginfo")).unwrap();
        assert!(client(&cache, &[]).find(&id, Artifact::DebugInfo).is_none());
        // The cache directory a symlink: refused, with a note.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&cache, &link).unwrap();
        let c = client(&link, &[]);
        assert!(c.find(&id, Artifact::DebugInfo).is_none());
        let notes = std::mem::take(&mut lock(&c.state).notes);
        assert!(notes.iter().any(|n| n.contains("symlink")), "{notes:?}");
    }

    #[test]
    fn a_cache_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let id = seed_cache(&cache, Artifact::DebugInfo);
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let c = client(&cache, &[]);
        assert!(c.find(&id, Artifact::DebugInfo).is_none());
        let notes = std::mem::take(&mut lock(&c.state).notes);
        assert!(notes.iter().any(|n| n.contains("chmod go-w")), "{notes:?}");
    }

    /// A loopback server that answers its first connections with `answers`, one each, in order
    /// (a real HTTP exchange, whatever the bytes say).
    fn answering(answers: Vec<Vec<u8>>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(&answer);
            }
        });
        url
    }

    #[test]
    fn bad_answers_give_one_note_per_server_and_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let urls = [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"HTTP/1.1 500 Broken\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n\x7fELF",
            b"not HTTP at all\r\n\r\n",
        ]
        .map(|answer| answering(vec![answer.to_vec()]))
        .into_iter()
        // And a TLS handshake answered in plain text.
        .chain([answering(vec![b"HTTP/1.1 200 OK\r\n\r\n".to_vec()]).replace("http:", "https:")])
        .collect::<Vec<_>>();
        let c = client(&cache, &urls.iter().map(String::as_str).collect::<Vec<_>>());
        let id = [0x42; 20];
        assert!(c.find(&id, Artifact::DebugInfo).is_none());
        assert!(c.find(&[0x43; 20], Artifact::DebugInfo).is_none());
        let notes = std::mem::take(&mut lock(&c.state).notes);
        assert_eq!(notes.len(), urls.len(), "{notes:#?}");
        for (note, url) in notes.iter().zip(&urls) {
            assert!(note.contains(url.as_str()), "{note}");
        }
        // Neither the temporary files nor their directories are left.
        let left: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_file_over_the_limit_is_not_fetched() {
        let tmp = tempfile::tempdir().unwrap();
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n".to_vec();
        chunked.extend([b'x'; 0x800]);
        chunked.extend(b"\r\n0\r\n\r\n");
        let url = answering(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n\x7fELF".to_vec(),
            chunked,
        ]);
        let mut c = client(&tmp.path().join("cache"), &[&url]);
        c.settings.max_size = 1000;
        for id in [[1; 20], [2; 20]] {
            assert!(c.find(&id, Artifact::Executable).is_none());
        }
        let notes = std::mem::take(&mut lock(&c.state).notes);
        assert_eq!(notes.len(), 2, "{notes:#?}");
        assert!(
            notes.iter().all(|n| n.contains("DEBUGINFOD_MAXSIZE")),
            "{notes:#?}"
        );
    }

    #[test]
    fn the_budget_bounds_servers_that_never_answer() {
        // Listening, so connections succeed, but nothing is ever read or answered.
        let silent: Vec<_> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let urls: Vec<String> = (silent.iter())
            .map(|l| format!("http://{}", l.local_addr().unwrap()))
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let mut c = client(&tmp.path().join("cache"), &[&urls[0], &urls[1]]);
        c.settings.budget = Duration::from_secs(1);
        let started = Instant::now();
        assert!(c.find(&[7; 20], Artifact::DebugInfo).is_none());
        assert!(c.find(&[8; 20], Artifact::DebugInfo).is_none());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let notes = std::mem::take(&mut lock(&c.state).notes);
        assert_eq!(notes.len(), 2, "{notes:#?}");
        assert!(notes[0].contains(&urls[0]), "{notes:#?}");
        assert!(notes[1].contains("used up"), "{notes:#?}");
    }

    #[test]
    fn a_missing_cache_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("a/b/cache");
        let c = client(&cache, &[]);
        assert!(c.find(&[1; 20], Artifact::DebugInfo).is_none());
        let meta = std::fs::metadata(&cache).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
    }
}
