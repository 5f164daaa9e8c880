//! debuginfod (issue 13 item 6) against a real server: Debian's `debuginfod` serving a directory
//! of unstripped fixtures (`-F`), started by each test on a free loopback port with its
//! database in a temporary directory, and killed at the end. The profiled binaries are stripped
//! copies (build-id note kept): their function names can only come from the server.
//!
//! Ground truth: `split` (fixtures/c/split.c) spends its time in `work_a`, `work_b` and `work_c`,
//! called by `main`; the stripped copy has no symbol naming them.

mod util;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use util::{KillOnDrop, Variant};

/// How long the server may take to index the fixtures (it scans asynchronously).
const INDEX_WAIT: Duration = Duration::from_secs(60);
const WORK: [&str; 3] = ["work_a", "work_b", "work_c"];

/// A temporary directory with `served/split` (unstripped, what the server indexes) and
/// `stripped/split` (what is profiled), and the build-id both carry.
struct Setup {
    dir: tempfile::TempDir,
    build_id: String,
}

impl Setup {
    /// None (the test skipped, or failed with CI=true) when gcc or objcopy is missing.
    fn new() -> Option<Setup> {
        if !util::require_gcc()
            || !util::require_tool("objcopy", &["--version"], "install binutils")
        {
            return None;
        }
        let fixture = util::fixture("split", Variant::CFramePointers);
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup {
            build_id: build_id(&fixture).expect("the fixture has a build-id"),
            dir,
        };
        std::fs::create_dir(setup.path("served")).unwrap();
        std::fs::create_dir(setup.path("stripped")).unwrap();
        std::fs::copy(&fixture, setup.path("served/split")).unwrap();
        let status = Command::new("objcopy")
            .arg("--strip-all")
            .arg(&fixture)
            .arg(setup.path("stripped/split"))
            .status()
            .unwrap();
        assert!(status.success(), "objcopy --strip-all failed");
        assert_eq!(
            build_id(&setup.path("stripped/split")).as_deref(),
            Some(setup.build_id.as_str()),
            "the stripped copy keeps the build-id note"
        );
        let bytes = std::fs::read(setup.path("stripped/split")).unwrap();
        let names = symbol_names(&bytes);
        assert!(
            !names.iter().any(|n| WORK.contains(&n.as_str())),
            "the stripped copy still names work_a/b/c: {names:?}"
        );
        Some(setup)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Starts `debuginfod -F served` and waits until it serves the fixture's debug info.
    fn server(&self) -> Option<Server> {
        if !util::require_tool("debuginfod", &["--version"], "install debuginfod") {
            return None;
        }
        Some(Server::start(
            &self.path("served"),
            self.dir.path(),
            &self.build_id,
        ))
    }

    /// `flamegraph ARGS -o out.folded -- stripped/split serial 0.3` with `DEBUGINFOD_URLS=urls`
    /// and the cache in `cache/`: the run's output and its folded stacks.
    fn profile(&self, urls: &str, args: &[&str]) -> (Output, Vec<(Vec<String>, u64)>) {
        self.profile_with(urls, args, &[])
    }

    /// [`Setup::profile`] with more environment variables.
    fn profile_with(
        &self,
        urls: &str,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> (Output, Vec<(Vec<String>, u64)>) {
        let out = self.path("out.folded");
        let _ = std::fs::remove_file(&out);
        let mut cmd = util::flamegraph();
        cmd.current_dir(self.dir.path())
            .env("DEBUGINFOD_URLS", urls)
            .env("DEBUGINFOD_CACHE_PATH", self.path("cache"))
            .env_remove("DEBUGINFOD_TIMEOUT")
            .env_remove("DEBUGINFOD_MAXSIZE")
            .envs(vars.iter().copied())
            .args(args)
            .arg("-o")
            .arg(&out)
            .arg("--")
            .arg(self.path("stripped/split"))
            .args(["serial", "0.3"]);
        let output = util::run_ok(&mut cmd, Duration::from_secs(120));
        (output, read_folded(&out))
    }

    /// The cached file `cache/BUILD_ID/NAME`.
    fn cached(&self, name: &str) -> PathBuf {
        self.path("cache").join(&self.build_id).join(name)
    }
}

/// A running `debuginfod`, killed (and reaped) when dropped.
struct Server {
    _child: KillOnDrop,
    port: u16,
}

impl Server {
    /// `debuginfod -F DIR -d WORK/db.sqlite -p PORT` on a free port (a few tries, in case another
    /// process takes the port first), ready once `/buildid/ID/debuginfo` answers 200.
    fn start(served: &Path, work: &Path, build_id: &str) -> Server {
        let mut log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let log_path = work.join(format!("debuginfod-{attempt}.log"));
            let mut cmd = Command::new("debuginfod");
            cmd.arg("-F")
                .arg("-d")
                .arg(work.join(format!("db-{attempt}.sqlite")))
                .args(["-p", &port.to_string(), "-t", "0", "-g", "0"]);
            if listen_address_supported() {
                cmd.arg("--listen-address=127.0.0.1");
            }
            let child = cmd
                .arg(served)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path).unwrap())
                .spawn()
                .expect("cannot start debuginfod");
            let mut server = Server {
                _child: KillOnDrop(child),
                port,
            };
            let path = format!("/buildid/{build_id}/debuginfo");
            let deadline = Instant::now() + INDEX_WAIT;
            while Instant::now() < deadline {
                if server._child.0.try_wait().unwrap().is_some() {
                    break;
                }
                if http_status(port, &path) == Some(200) {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            server.port = 0;
            log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("debuginfod did not serve {build_id} within {INDEX_WAIT:?}; its log:\n{log}");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Newer debuginfod can listen on loopback only; 0.188 (Debian 12) listens on every address.
fn listen_address_supported() -> bool {
    Command::new("debuginfod")
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--listen-address"))
}

/// A loopback port nothing listens on (at the time of the call).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// The status of `GET path` on 127.0.0.1:port, if it answers within a few seconds.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The GNU build-id of an ELF file, in hex.
fn build_id(path: &Path) -> Option<String> {
    use object::Object;
    let bytes = std::fs::read(path).ok()?;
    let file = object::File::parse(&*bytes).ok()?;
    let id = file.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

fn symbol_names(bytes: &[u8]) -> Vec<String> {
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(bytes).unwrap();
    (file.symbols().chain(file.dynamic_symbols()))
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect()
}

fn read_folded(path: &Path) -> Vec<(Vec<String>, u64)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no folded output at {}: {e}", path.display()));
    util::parse_folded(&text)
}

/// The work functions named in the stacks.
fn named_work(stacks: &[(Vec<String>, u64)]) -> Vec<&'static str> {
    WORK.into_iter()
        .filter(|name| {
            (stacks.iter()).any(|(frames, _)| frames.iter().any(|f| util::frame_matches(f, name)))
        })
        .collect()
}

fn debuginfod_notes(output: &Output) -> Vec<String> {
    (String::from_utf8_lossy(&output.stderr).lines())
        .filter(|l| l.contains("debuginfod"))
        .map(str::to_owned)
        .collect()
}

fn describe(output: &Output, stacks: &[(Vec<String>, u64)]) -> String {
    let folded: Vec<String> = (stacks.iter().take(20))
        .map(|(frames, n)| format!("{} {n}", frames.join(";")))
        .collect();
    format!(
        "{}\n--- folded (first 20) ---\n{}",
        util::describe_output(output),
        folded.join("\n")
    )
}

#[test]
fn names_of_a_stripped_binary_come_from_the_server() {
    let Some(setup) = Setup::new() else { return };
    let Some(server) = setup.server() else { return };
    let (output, stacks) = setup.profile(&server.url(), &[]);
    assert_eq!(named_work(&stacks), WORK, "{}", describe(&output, &stacks));
    // In elfutils' layout, and the file the server has (the unstripped binary).
    let cached = setup.cached("debuginfo");
    assert_eq!(
        std::fs::read(&cached).ok(),
        std::fs::read(setup.path("served/split")).ok(),
        "{} is not the served file",
        cached.display()
    );
    assert_eq!(debuginfod_notes(&output), Vec::<String>::new());
    // A second run finds it in the cache, with no server at all.
    drop(server);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (output, stacks) = setup.profile(&dead, &[]);
    assert_eq!(named_work(&stacks), WORK, "{}", describe(&output, &stacks));
}

/// `debuginfod-find debuginfo BUILD_ID` with this cache and these servers: the path it prints.
fn elfutils_find(setup: &Setup, cache: &str, urls: &str) -> Option<PathBuf> {
    let output = util::run_with_timeout(
        Command::new("debuginfod-find")
            .env("DEBUGINFOD_URLS", urls)
            .env("DEBUGINFOD_CACHE_PATH", setup.path(cache))
            .args(["debuginfo", &setup.build_id]),
        Duration::from_secs(60),
    );
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

#[test]
fn the_cache_is_shared_with_elfutils() {
    let Some(setup) = Setup::new() else { return };
    let Some(server) = setup.server() else { return };
    if !util::require_tool("debuginfod-find", &["--help"], "install debuginfod") {
        return;
    }
    // We fetch into cache/, elfutils into elfutils-cache/; then the server is gone.
    let (output, stacks) = setup.profile(&server.url(), &[]);
    assert_eq!(named_work(&stacks), WORK, "{}", describe(&output, &stacks));
    let theirs = elfutils_find(&setup, "elfutils-cache", &server.url());
    assert!(theirs.is_some(), "debuginfod-find could not fetch the file");
    drop(server);
    let dead = format!("http://127.0.0.1:{}", free_port());
    // elfutils finds ours in the cache, and we find theirs.
    assert_eq!(
        elfutils_find(&setup, "cache", &dead),
        Some(setup.cached("debuginfo"))
    );
    let (output, stacks) = setup.profile_with(
        &dead,
        &[],
        &[(
            "DEBUGINFOD_CACHE_PATH",
            setup.path("elfutils-cache").to_str().unwrap(),
        )],
    );
    assert_eq!(named_work(&stacks), WORK, "{}", describe(&output, &stacks));
}

#[test]
fn no_debuginfod_fetches_nothing() {
    let Some(setup) = Setup::new() else { return };
    let Some(server) = setup.server() else { return };
    let (output, stacks) = setup.profile(&server.url(), &["--no-debuginfod"]);
    assert_eq!(
        named_work(&stacks),
        Vec::<&str>::new(),
        "{}",
        describe(&output, &stacks)
    );
    assert!(
        (stacks.iter()).any(|(frames, _)| frames.iter().any(|f| f.starts_with("split+0x"))),
        "the stripped binary's frames are split+0xOFFSET\n{}",
        describe(&output, &stacks)
    );
    assert!(!setup.path("cache").exists(), "no cache is made");
}

#[test]
fn a_file_over_the_size_limit_is_not_fetched() {
    let Some(setup) = Setup::new() else { return };
    let Some(server) = setup.server() else { return };
    // The fixture is ~30 KB.
    let limit = [("DEBUGINFOD_MAXSIZE", "1000")];
    let (output, stacks) = setup.profile_with(&server.url(), &[], &limit);
    assert_eq!(named_work(&stacks), Vec::<&str>::new());
    let notes = debuginfod_notes(&output);
    assert_eq!(notes.len(), 1, "{}", util::describe_output(&output));
    assert!(
        notes[0].contains(&setup.build_id) && notes[0].contains("DEBUGINFOD_MAXSIZE"),
        "{notes:?}"
    );
    assert!(!setup.cached("debuginfo").exists());
}

#[test]
fn an_unreachable_server_costs_one_note() {
    let Some(setup) = Setup::new() else { return };
    // Nothing listens there: every connection is refused.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (output, stacks) = setup.profile(&dead, &[]);
    assert!(!stacks.is_empty(), "{}", describe(&output, &stacks));
    assert_eq!(named_work(&stacks), Vec::<&str>::new());
    let notes = debuginfod_notes(&output);
    assert_eq!(notes.len(), 1, "{}", util::describe_output(&output));
    assert!(notes[0].contains(&dead), "{notes:?}");
}

#[test]
fn a_perf_data_file_whose_binary_is_gone_gets_it_from_the_server() {
    let Some(setup) = Setup::new() else { return };
    if !util::require_perf() {
        return;
    }
    let Some(server) = setup.server() else { return };
    let data = setup.path("perf.data");
    let status = Command::new("perf")
        .env("HOME", setup.dir.path())
        .env_remove("DEBUGINFOD_URLS")
        .args(["record", "-q", "-N", "-g", "-F", "997", "-o"])
        .arg(&data)
        .arg("--")
        .arg(setup.path("stripped/split"))
        .args(["serial", "0.3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "perf record failed");
    // As on another machine: the recorded binary is not here.
    std::fs::remove_file(setup.path("stripped/split")).unwrap();
    let out = setup.path("out.folded");
    let output = util::run_ok(
        util::flamegraph()
            .env("HOME", setup.dir.path())
            .env("DEBUGINFOD_URLS", server.url())
            .env("DEBUGINFOD_CACHE_PATH", setup.path("cache"))
            .arg("--perfdata")
            .arg(&data)
            .arg("-o")
            .arg(&out),
        Duration::from_secs(120),
    );
    let stacks = read_folded(&out);
    assert_eq!(named_work(&stacks), WORK, "{}", describe(&output, &stacks));
    assert!(setup.cached("executable").is_file());
}
