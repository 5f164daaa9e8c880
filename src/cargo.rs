//! The `cargo flamegraph` integration: build the requested target through cargo and find the
//! executable to profile.
//!
//! The CLI converts its arguments into [`CargoOptions`] (clap never reaches this module) and calls
//! [`build`]. The build runs `cargo build` (or `cargo test --no-run` for unit-test harnesses,
//! `cargo bench --no-run` for benches) with `--message-format=json-render-diagnostics`: the
//! compiler's progress and errors go to our stderr as usual, and the executable is taken from the
//! `compiler-artifact` messages on cargo's stdout, never guessed from the `target/` layout.
//!
//! When no target is named, `cargo metadata` tells which binaries the selected package (or the
//! workspace's default members) has, honouring `default-run`, the way `cargo run` picks one.

use std::ffi::OsString;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use cargo_metadata::{
    Artifact, ArtifactDebuginfo, Message, Metadata, MetadataCommand, Package, Target, TargetKind,
};

/// Which harness `--unit-test NAME` / `--unit-bench NAME` means when a library and a binary share
/// the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitTestKind {
    /// The unit tests of a binary target (`cargo test --bin NAME`).
    Bin,
    /// The unit tests of the library target (`cargo test --lib`).
    Lib,
}

/// Cargo-style options of `cargo flamegraph`. Every field defaults to "not given".
#[derive(Clone, Debug, Default)]
pub struct CargoOptions {
    /// `--dev`: build with the `dev` profile. Default: `release` (`bench` for benches).
    pub dev: bool,
    /// `--profile NAME`: build with this profile; wins over `dev`.
    pub profile: Option<String>,
    /// `-p NAME`: the workspace member to build. Default: the package of the manifest in use, or
    /// the workspace's default members for a virtual manifest.
    pub package: Option<String>,
    /// `--bin NAME`: profile this binary.
    pub bin: Option<String>,
    /// `--target TRIPLE`: cross-compile for this target triple; combines with every target kind.
    pub target: Option<String>,
    /// `--example NAME`: profile this example.
    pub example: Option<String>,
    /// `--test NAME`: profile this integration test (its whole harness).
    pub test: Option<String>,
    /// `--unit-test [NAME]`: profile the unit-test harness of a library (the default) or binary.
    pub unit_test: Option<Option<String>>,
    /// `--unit-test-kind`: library or binary harness, for `--unit-test` and `--unit-bench` only.
    pub unit_test_kind: Option<UnitTestKind>,
    /// `--unit-bench [NAME]`: like `unit_test`, built by `cargo bench` and run with `--bench`.
    pub unit_bench: Option<Option<String>>,
    /// `--bench NAME`: profile this benchmark, run with `--bench` as its first argument.
    pub bench: Option<String>,
    /// `--manifest-path PATH`: the `Cargo.toml` to use. Default: the nearest one above the
    /// working directory, as cargo finds it.
    pub manifest_path: Option<PathBuf>,
    /// `--features LIST`: features to enable, passed to cargo as is.
    pub features: Option<String>,
    /// `--no-default-features`.
    pub no_default_features: bool,
    /// `--release`: accepted for `cargo run --release` habits; release is already the default.
    pub release: bool,
    /// `--verbose`: print the cargo command line to stderr before running it.
    pub verbose: bool,
    /// Arguments after `--`, passed to the profiled program.
    pub trailing_args: Vec<String>,
}

/// What [`build`] produced: the program to profile and how to run it.
#[derive(Clone, Debug)]
pub struct BuiltTarget {
    /// The built executable.
    pub executable: PathBuf,
    /// Arguments for the executable: `--bench` first for benches, then the trailing arguments.
    pub args: Vec<OsString>,
    /// Problems worth telling the user, each with its fix (e.g. a profile without debug info).
    pub warnings: Vec<String>,
    /// Informational messages, such as which binary was selected automatically.
    pub notes: Vec<String>,
}

/// Why [`build`] failed. Each message is one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CargoError {
    /// The cargo program could not be found.
    #[error("cannot run `{program}`: not found; install Rust (https://rustup.rs) or set CARGO to the cargo binary")]
    CargoNotFound {
        /// The program that was looked for (`$CARGO` or `cargo`).
        program: String,
    },
    /// Cargo could not be started or its output could not be read.
    #[error("cannot run `{program}`: {source}")]
    Io {
        /// The program run.
        program: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The build command exited unsuccessfully.
    #[error("`{command}` failed ({status}); fix the errors cargo printed above{hint}")]
    BuildFailed {
        /// The command line, as it could be pasted in a shell.
        command: String,
        /// Cargo's exit status.
        status: ExitStatus,
        /// Extra help, such as the available targets of the requested kind; empty if none.
        hint: String,
    },
    /// `cargo metadata` failed.
    #[error("cannot read the package layout with `cargo metadata`: {0}")]
    Metadata(#[from] cargo_metadata::Error),
    /// No `Cargo.toml` around the working directory.
    #[error("no Cargo.toml in {} or any parent directory; run from a cargo project or pass --manifest-path", dir.display())]
    NoManifest {
        /// The directory searched from.
        dir: PathBuf,
    },
    /// `-p` names no workspace member.
    #[error("the workspace has no package `{name}`; its packages are: {available}")]
    UnknownPackage {
        /// The requested package.
        name: String,
        /// The workspace members, comma-separated.
        available: String,
    },
    /// Nothing to profile was found.
    #[error("no {what} to profile in {scope}; {hint}")]
    NoTarget {
        /// What was looked for ("binary", "library or binary with unit tests named `x`", ...).
        what: String,
        /// Where ("package `app`", "the workspace's default members").
        scope: String,
        /// What to do instead.
        hint: String,
    },
    /// Several targets fit and none was named.
    #[error("several {what} could be profiled; choose one with {candidates}")]
    AmbiguousTarget {
        /// What was looked for.
        what: String,
        /// The options that select each candidate, comma-separated.
        candidates: String,
    },
    /// Two target selections were given.
    #[error("{first} and {second} cannot be combined; profile one target at a time")]
    ConflictingTargets {
        /// The first option given.
        first: &'static str,
        /// The second option given.
        second: &'static str,
    },
    /// `--unit-test-kind` without a unit-test target.
    #[error(
        "--unit-test-kind only applies to --unit-test or --unit-bench; add one of them or drop it"
    )]
    UnitTestKindWithoutUnitTest,
    /// Cargo succeeded but reported no executable for the requested target.
    #[error("cargo built no executable for {wanted}; executables built: {built}")]
    ExecutableNotFound {
        /// The requested target.
        wanted: String,
        /// The executables cargo reported, comma-separated.
        built: String,
    },
}

/// Builds the target that `options` select and returns the executable to profile.
///
/// Cargo's progress and compiler errors go to this process's stderr.
pub fn build(options: &CargoOptions) -> Result<BuiltTarget, CargoError> {
    let request = Request::from_options(options)?;
    let mut notes = Vec::new();
    let resolved = resolve(request, options, &mut notes)?;
    let mode = request.mode();
    let profile = profile_name(options, mode);
    let command = cargo_command(options, &resolved, mode, &profile);
    if options.verbose {
        eprintln!("build command: {}", command.display());
    }
    let artifacts = command.run().map_err(|e| add_hint(e, request, options))?;
    let artifact = pick_artifact(&artifacts, &resolved)?;

    let mut warnings = Vec::new();
    if artifact.profile.debuginfo == ArtifactDebuginfo::None {
        warnings.push(debuginfo_warning(&profile));
    }
    let executable = artifact
        .executable
        .clone()
        .map(PathBuf::from)
        .ok_or_else(|| not_found(&artifacts, &resolved))?;
    let mut args: Vec<OsString> = Vec::new();
    if mode == Mode::Bench {
        args.push("--bench".into());
    }
    args.extend(options.trailing_args.iter().map(OsString::from));
    Ok(BuiltTarget {
        executable,
        args,
        warnings,
        notes,
    })
}

/// The one target selection the user asked for.
#[derive(Clone, Copy, Debug)]
enum Request<'a> {
    Auto,
    Bin(&'a str),
    Example(&'a str),
    Test(&'a str),
    Bench(&'a str),
    UnitTest(Option<&'a str>),
    UnitBench(Option<&'a str>),
}

impl<'a> Request<'a> {
    fn from_options(o: &'a CargoOptions) -> Result<Self, CargoError> {
        let given = [
            ("--bin", o.bin.as_deref().map(Request::Bin)),
            ("--example", o.example.as_deref().map(Request::Example)),
            ("--test", o.test.as_deref().map(Request::Test)),
            ("--bench", o.bench.as_deref().map(Request::Bench)),
            (
                "--unit-test",
                o.unit_test
                    .as_ref()
                    .map(|t| Request::UnitTest(t.as_deref())),
            ),
            (
                "--unit-bench",
                o.unit_bench
                    .as_ref()
                    .map(|t| Request::UnitBench(t.as_deref())),
            ),
        ];
        let mut chosen: Option<(&'static str, Request<'a>)> = None;
        for (flag, request) in given {
            match (request, chosen) {
                (Some(_), Some((first, _))) => {
                    return Err(CargoError::ConflictingTargets {
                        first,
                        second: flag,
                    })
                }
                (Some(r), None) => chosen = Some((flag, r)),
                (None, _) => {}
            }
        }
        let request = chosen.map_or(Request::Auto, |(_, r)| r);
        let is_unit = matches!(request, Request::UnitTest(_) | Request::UnitBench(_));
        if o.unit_test_kind.is_some() && !is_unit {
            return Err(CargoError::UnitTestKindWithoutUnitTest);
        }
        Ok(request)
    }

    fn mode(self) -> Mode {
        match self {
            Request::Bench(_) | Request::UnitBench(_) => Mode::Bench,
            Request::UnitTest(_) => Mode::Test,
            _ => Mode::Build,
        }
    }
}

/// The cargo subcommand: `build`, `test --no-run` or `bench --no-run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Build,
    Test,
    Bench,
}

/// The kind of compiler artifact that holds the executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArtifactKind {
    Bin,
    Example,
    Test,
    Bench,
    /// The `--test` harness of a library.
    LibHarness,
    /// The `--test` harness of a binary.
    BinHarness,
}

/// A target resolved to a kind, a name and possibly a package.
#[derive(Clone, Debug)]
struct Resolved {
    kind: ArtifactKind,
    name: String,
    package: Option<String>,
}

impl Resolved {
    fn describe(&self) -> String {
        let kind = match self.kind {
            ArtifactKind::Bin => "binary",
            ArtifactKind::Example => "example",
            ArtifactKind::Test => "integration test",
            ArtifactKind::Bench => "bench",
            ArtifactKind::LibHarness => "unit tests of library",
            ArtifactKind::BinHarness => "unit tests of binary",
        };
        format!("{kind} `{}`", self.name)
    }
}

fn resolve(
    request: Request<'_>,
    options: &CargoOptions,
    notes: &mut Vec<String>,
) -> Result<Resolved, CargoError> {
    let named = |kind, name: &str| Resolved {
        kind,
        name: name.to_owned(),
        package: options.package.clone(),
    };
    Ok(match request {
        Request::Bin(n) => named(ArtifactKind::Bin, n),
        Request::Example(n) => named(ArtifactKind::Example, n),
        Request::Test(n) => named(ArtifactKind::Test, n),
        Request::Bench(n) => named(ArtifactKind::Bench, n),
        Request::Auto => {
            let metadata = load_metadata(options)?;
            auto_bin(&scope_packages(&metadata, options)?, notes)?
        }
        Request::UnitTest(name) | Request::UnitBench(name) => {
            let metadata = load_metadata(options)?;
            let scope = scope_packages(&metadata, options)?;
            unit_harness(&scope, name, options.unit_test_kind)?
        }
    })
}

fn load_metadata(options: &CargoOptions) -> Result<Metadata, CargoError> {
    let mut command = MetadataCommand::new();
    command.no_deps();
    if let Some(path) = &options.manifest_path {
        command.manifest_path(path);
    }
    command.exec().map_err(|e| match e {
        cargo_metadata::Error::Io(io) if io.kind() == io::ErrorKind::NotFound => {
            CargoError::CargoNotFound {
                program: cargo_program().to_string_lossy().into_owned(),
            }
        }
        e => CargoError::Metadata(e),
    })
}

/// `$CARGO` (set when running as a cargo subcommand) or `cargo` from `PATH`.
fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The packages a target is looked for in, with a description for messages.
struct Scope<'m> {
    packages: Vec<&'m Package>,
    description: String,
}

/// The packages cargo itself would build: `-p`, else the package of the manifest in use, else
/// (virtual manifest) the workspace's default members.
fn scope_packages<'m>(
    metadata: &'m Metadata,
    options: &CargoOptions,
) -> Result<Scope<'m>, CargoError> {
    let members = metadata.workspace_packages();
    if let Some(name) = &options.package {
        // Accept cargo's `name@version` spec form by its name.
        let bare = name.split('@').next().unwrap_or(name);
        let found: Vec<_> = members
            .iter()
            .copied()
            .filter(|p| *p.name == *bare)
            .collect();
        if found.is_empty() {
            let available = members
                .iter()
                .map(|p| p.name.to_string())
                .collect::<Vec<_>>();
            return Err(CargoError::UnknownPackage {
                name: name.clone(),
                available: available.join(", "),
            });
        }
        return Ok(Scope {
            packages: found,
            description: format!("package `{bare}`"),
        });
    }
    let manifest = current_manifest(options)?;
    if let Some(package) = members
        .iter()
        .find(|p| same_file(p.manifest_path.as_std_path(), &manifest))
    {
        return Ok(Scope {
            packages: vec![package],
            description: format!("package `{}`", package.name),
        });
    }
    let packages = if metadata.workspace_default_members.is_available() {
        metadata.workspace_default_packages()
    } else {
        members
    };
    Ok(Scope {
        packages,
        description: "the workspace's default members".to_owned(),
    })
}

/// The manifest cargo uses: `--manifest-path`, else the nearest `Cargo.toml` upwards.
fn current_manifest(options: &CargoOptions) -> Result<PathBuf, CargoError> {
    if let Some(path) = &options.manifest_path {
        return Ok(path.clone());
    }
    let dir = std::env::current_dir().map_err(|source| CargoError::Io {
        program: "cargo".to_owned(),
        source,
    })?;
    dir.ancestors()
        .map(|d| d.join("Cargo.toml"))
        .find(|m| m.is_file())
        .ok_or(CargoError::NoManifest { dir })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// One target that could be profiled, with the options that select it.
struct Candidate {
    package: String,
    target: String,
    is_lib: bool,
}

/// Picks the one binary to run, as `cargo run` does: `default-run` first, else the only one.
fn auto_bin(scope: &Scope<'_>, notes: &mut Vec<String>) -> Result<Resolved, CargoError> {
    let mut candidates = Vec::new();
    let mut by_default_run = false;
    for package in &scope.packages {
        let bins: Vec<&Target> = package.targets.iter().filter(|t| is_bin(t)).collect();
        let default = package
            .default_run
            .as_ref()
            .and_then(|d| bins.iter().find(|t| t.name == *d));
        let chosen = match default {
            Some(t) => {
                by_default_run = true;
                vec![*t]
            }
            None => bins,
        };
        candidates.extend(chosen.into_iter().map(|t| Candidate {
            package: package.name.to_string(),
            target: t.name.clone(),
            is_lib: false,
        }));
    }
    let hint = "pass --example, --test, --bench or --unit-test, or -p for another package";
    let chosen = single(
        candidates,
        "binary",
        "binaries",
        &scope.description,
        Some("--bin"),
        hint,
    )?;
    if !(by_default_run && scope.packages.len() == 1) {
        notes.push(format!(
            "automatically selected binary `{}` of package `{}`, the only one to run",
            chosen.target, chosen.package
        ));
    }
    Ok(Resolved {
        kind: ArtifactKind::Bin,
        name: chosen.target,
        package: Some(chosen.package),
    })
}

/// Finds the library or binary whose unit-test harness to build: the library by default.
fn unit_harness(
    scope: &Scope<'_>,
    name: Option<&str>,
    kind: Option<UnitTestKind>,
) -> Result<Resolved, CargoError> {
    let mut candidates = Vec::new();
    for package in &scope.packages {
        for target in &package.targets {
            let is_lib = is_lib(target);
            let kind_ok = match kind {
                Some(UnitTestKind::Lib) => is_lib,
                Some(UnitTestKind::Bin) => is_bin(target),
                None => is_lib || is_bin(target),
            };
            let name_ok = name.is_none_or(|n| lib_name_eq(n, &target.name));
            if kind_ok && name_ok {
                candidates.push(Candidate {
                    package: package.name.to_string(),
                    target: target.name.clone(),
                    is_lib,
                });
            }
        }
    }
    // Without an explicit kind, a library wins over binaries of the same package.
    if kind.is_none() {
        let lib_packages: Vec<String> = candidates
            .iter()
            .filter(|c| c.is_lib)
            .map(|c| c.package.clone())
            .collect();
        candidates.retain(|c| c.is_lib || !lib_packages.contains(&c.package));
    }
    let what = match name {
        Some(n) => format!("library or binary with unit tests named `{n}`"),
        None => "library or binary with unit tests".to_owned(),
    };
    let hint = available_harnesses(&scope.packages);
    let chosen = single(
        candidates,
        &what,
        "unit-test harnesses",
        &scope.description,
        None,
        &hint,
    )?;
    Ok(Resolved {
        kind: if chosen.is_lib {
            ArtifactKind::LibHarness
        } else {
            ArtifactKind::BinHarness
        },
        name: chosen.target,
        package: Some(chosen.package),
    })
}

/// The libraries and binaries of `packages`, as a hint for a `--unit-test` that found nothing.
fn available_harnesses(packages: &[&Package]) -> String {
    let names: Vec<String> = packages
        .iter()
        .flat_map(|p| &p.targets)
        .filter(|t| is_lib(t) || is_bin(t))
        .map(|t| {
            let kind = if is_lib(t) { "lib" } else { "bin" };
            format!("`--unit-test {} --unit-test-kind {kind}`", t.name)
        })
        .collect();
    match names.is_empty() {
        true => "it has no library or binary; pick another package with -p".to_owned(),
        false => format!("available: {}", names.join(", ")),
    }
}

/// The only candidate, or an error that lists the options selecting each one.
fn single(
    mut candidates: Vec<Candidate>,
    what: &str,
    what_plural: &str,
    scope: &str,
    flag: Option<&str>,
    hint: &str,
) -> Result<Candidate, CargoError> {
    if candidates.len() > 1 {
        let one_package = candidates
            .iter()
            .all(|c| c.package == candidates[0].package);
        let list: Vec<String> = candidates
            .iter()
            .map(|c| {
                let select = match flag {
                    Some(flag) => format!("{flag} {}", c.target),
                    None if c.is_lib => format!("--unit-test {} --unit-test-kind lib", c.target),
                    None => format!("--unit-test {} --unit-test-kind bin", c.target),
                };
                match one_package {
                    true => format!("`{select}`"),
                    false => format!("`-p {} {select}`", c.package),
                }
            })
            .collect();
        return Err(CargoError::AmbiguousTarget {
            what: what_plural.to_owned(),
            candidates: list.join(", "),
        });
    }
    candidates.pop().ok_or_else(|| CargoError::NoTarget {
        what: what.to_owned(),
        scope: scope.to_owned(),
        hint: hint.to_owned(),
    })
}

fn is_bin(target: &Target) -> bool {
    target.kind.contains(&TargetKind::Bin)
}

fn is_lib(target: &Target) -> bool {
    target.kind.iter().any(|k| {
        matches!(
            k,
            TargetKind::Lib
                | TargetKind::RLib
                | TargetKind::DyLib
                | TargetKind::CDyLib
                | TargetKind::StaticLib
                | TargetKind::ProcMacro
        )
    })
}

/// Target names compare with `-` and `_` alike: a library `lib-crate` is named `lib_crate`.
fn lib_name_eq(given: &str, target: &str) -> bool {
    given == target || given.replace('-', "_") == target.replace('-', "_")
}

/// The profile in use: `--profile`, `--dev`, else `bench` for benches and `release` otherwise.
fn profile_name(options: &CargoOptions, mode: Mode) -> String {
    match (&options.profile, options.dev, mode) {
        (Some(p), _, _) => p.clone(),
        (None, true, _) => "dev".to_owned(),
        (None, false, Mode::Bench) => "bench".to_owned(),
        (None, false, _) => "release".to_owned(),
    }
}

fn debuginfo_warning(profile: &str) -> String {
    let env = format!(
        "CARGO_PROFILE_{}_DEBUG",
        profile.to_uppercase().replace('-', "_")
    );
    format!(
        "profiling without debug info: the `{profile}` profile has `debug` off, so the flame graph \
         will lack inlined frames and source lines; add `debug = true` under `[profile.{profile}]` \
         in Cargo.toml, or set `{env}=true`"
    )
}

/// A cargo invocation: the program and its arguments.
struct CargoCommand {
    program: OsString,
    args: Vec<OsString>,
}

fn cargo_command(
    options: &CargoOptions,
    resolved: &Resolved,
    mode: Mode,
    profile: &str,
) -> CargoCommand {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |a: &str| args.push(a.into());
    match mode {
        Mode::Build => push("build"),
        Mode::Test => {
            push("test");
            push("--no-run");
        }
        Mode::Bench => {
            push("bench");
            push("--no-run");
        }
    }
    push("--profile");
    push(profile);
    if let Some(package) = &resolved.package {
        push("--package");
        push(package);
    }
    let selector = match resolved.kind {
        ArtifactKind::Bin | ArtifactKind::BinHarness => "--bin",
        ArtifactKind::Example => "--example",
        ArtifactKind::Test => "--test",
        ArtifactKind::Bench => "--bench",
        ArtifactKind::LibHarness => "--lib",
    };
    push(selector);
    if resolved.kind != ArtifactKind::LibHarness {
        push(&resolved.name);
    }
    if let Some(triple) = &options.target {
        push("--target");
        push(triple);
    }
    if let Some(features) = &options.features {
        push("--features");
        push(features);
    }
    if options.no_default_features {
        push("--no-default-features");
    }
    push("--message-format=json-render-diagnostics");
    if let Some(path) = &options.manifest_path {
        args.push("--manifest-path".into());
        args.push(path.into());
    }
    CargoCommand {
        program: cargo_program(),
        args,
    }
}

impl CargoCommand {
    /// The command line, quoted for a POSIX shell where needed.
    fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs cargo, streaming its JSON messages; returns the compiler artifacts.
    fn run(&self) -> Result<Vec<Artifact>, CargoError> {
        let program = self.program.to_string_lossy().into_owned();
        let io_error = |source: io::Error| match source.kind() {
            io::ErrorKind::NotFound => CargoError::CargoNotFound {
                program: program.clone(),
            },
            _ => CargoError::Io {
                program: program.clone(),
                source,
            },
        };
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io_error)?;
        let mut artifacts = Vec::new();
        let mut read_error = None;
        if let Some(stdout) = child.stdout.take() {
            for message in Message::parse_stream(BufReader::new(stdout)) {
                match message {
                    Ok(Message::CompilerArtifact(a)) => artifacts.push(a),
                    Ok(_) => {}
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
        }
        // Always reap the child, even when reading its output failed.
        let status = child.wait().map_err(io_error)?;
        if !status.success() {
            return Err(CargoError::BuildFailed {
                command: self.display(),
                status,
                hint: String::new(),
            });
        }
        match read_error {
            Some(source) => Err(CargoError::Io { program, source }),
            None => Ok(artifacts),
        }
    }
}

/// Quotes `arg` for a POSIX shell when it holds anything but plainly safe characters.
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Adds the available targets to a failed build of a named example, test, bench or binary.
fn add_hint(error: CargoError, request: Request<'_>, options: &CargoOptions) -> CargoError {
    let CargoError::BuildFailed {
        command, status, ..
    } = error
    else {
        return error;
    };
    let (flag, name, kind) = match request {
        Request::Bin(n) => ("--bin", n, TargetKind::Bin),
        Request::Example(n) => ("--example", n, TargetKind::Example),
        Request::Test(n) => ("--test", n, TargetKind::Test),
        Request::Bench(n) => ("--bench", n, TargetKind::Bench),
        _ => {
            return CargoError::BuildFailed {
                command,
                status,
                hint: String::new(),
            }
        }
    };
    let hint = match available_targets(options, &kind) {
        Some(names) if !names.iter().any(|t| t == name) => {
            let list: Vec<String> = names.iter().map(|t| format!("`{flag} {t}`")).collect();
            match list.is_empty() {
                true => format!("; there is no `{flag}` target at all"),
                false => format!("; no `{flag} {name}`, available: {}", list.join(", ")),
            }
        }
        _ => String::new(),
    };
    CargoError::BuildFailed {
        command,
        status,
        hint,
    }
}

/// The names of the targets of `kind` in the packages cargo would build, if metadata is readable.
fn available_targets(options: &CargoOptions, kind: &TargetKind) -> Option<Vec<String>> {
    let metadata = load_metadata(options).ok()?;
    let scope = scope_packages(&metadata, options).ok()?;
    let names = scope
        .packages
        .iter()
        .flat_map(|p| &p.targets)
        .filter(|t| t.kind.contains(kind))
        .map(|t| t.name.clone())
        .collect();
    Some(names)
}

/// The compiler artifact holding the requested target's executable.
fn pick_artifact<'a>(
    artifacts: &'a [Artifact],
    resolved: &Resolved,
) -> Result<&'a Artifact, CargoError> {
    artifacts
        .iter()
        .rev()
        .find(|a| a.executable.is_some() && artifact_matches(a, resolved))
        .ok_or_else(|| not_found(artifacts, resolved))
}

fn artifact_matches(artifact: &Artifact, resolved: &Resolved) -> bool {
    let target = &artifact.target;
    let harness = artifact.profile.test;
    match resolved.kind {
        ArtifactKind::Bin => is_bin(target) && !harness && target.name == resolved.name,
        ArtifactKind::BinHarness => is_bin(target) && harness && target.name == resolved.name,
        ArtifactKind::LibHarness => is_lib(target) && harness && target.name == resolved.name,
        ArtifactKind::Example => {
            target.kind.contains(&TargetKind::Example) && target.name == resolved.name
        }
        ArtifactKind::Test => {
            target.kind.contains(&TargetKind::Test) && target.name == resolved.name
        }
        ArtifactKind::Bench => {
            target.kind.contains(&TargetKind::Bench) && target.name == resolved.name
        }
    }
}

fn not_found(artifacts: &[Artifact], resolved: &Resolved) -> CargoError {
    let built: Vec<String> = artifacts
        .iter()
        .filter(|a| a.executable.is_some())
        .map(|a| {
            let kind = a
                .target
                .kind
                .first()
                .map_or("?".to_owned(), |k| k.to_string());
            format!("{kind} `{}`", a.target.name)
        })
        .collect();
    CargoError::ExecutableNotFound {
        wanted: resolved.describe(),
        built: if built.is_empty() {
            "none".to_owned()
        } else {
            built.join(", ")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_targets_conflict() {
        let options = CargoOptions {
            bin: Some("a".into()),
            example: Some("b".into()),
            ..Default::default()
        };
        let err = Request::from_options(&options).unwrap_err();
        assert!(matches!(
            err,
            CargoError::ConflictingTargets {
                first: "--bin",
                second: "--example"
            }
        ));
    }

    #[test]
    fn target_triple_combines_with_bin() {
        let options = CargoOptions {
            bin: Some("a".into()),
            target: Some("x86_64-unknown-linux-gnu".into()),
            ..Default::default()
        };
        assert!(matches!(
            Request::from_options(&options),
            Ok(Request::Bin("a"))
        ));
    }

    #[test]
    fn unit_test_kind_needs_unit_test() {
        let options = CargoOptions {
            unit_test_kind: Some(UnitTestKind::Bin),
            ..Default::default()
        };
        assert!(matches!(
            build(&options),
            Err(CargoError::UnitTestKindWithoutUnitTest)
        ));
    }

    #[test]
    fn profile_defaults() {
        let bench = CargoOptions::default();
        assert_eq!(profile_name(&bench, Mode::Bench), "bench");
        assert_eq!(profile_name(&bench, Mode::Test), "release");
        let dev = CargoOptions {
            dev: true,
            ..Default::default()
        };
        assert_eq!(profile_name(&dev, Mode::Bench), "dev");
        let named = CargoOptions {
            dev: true,
            profile: Some("my-prof".into()),
            ..Default::default()
        };
        assert_eq!(profile_name(&named, Mode::Build), "my-prof");
        assert!(debuginfo_warning("my-prof").contains("CARGO_PROFILE_MY_PROF_DEBUG=true"));
    }

    #[test]
    fn command_line_for_unit_bench_of_lib() {
        let options = CargoOptions {
            target: Some("x86_64-unknown-linux-gnu".into()),
            features: Some("extra".into()),
            no_default_features: true,
            ..Default::default()
        };
        let resolved = Resolved {
            kind: ArtifactKind::LibHarness,
            name: "lib_crate".into(),
            package: Some("lib-crate".into()),
        };
        let cmd = cargo_command(&options, &resolved, Mode::Bench, "bench");
        let args: Vec<_> = cmd.args.iter().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args.join(" "),
            "bench --no-run --profile bench --package lib-crate --lib \
             --target x86_64-unknown-linux-gnu --features extra --no-default-features \
             --message-format=json-render-diagnostics"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            shell_quote("--message-format=json"),
            "--message-format=json"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn lib_names_compare_dash_and_underscore_alike() {
        assert!(lib_name_eq("lib-crate", "lib_crate"));
        assert!(!lib_name_eq("lib-crate", "lib_crat"));
    }
}
