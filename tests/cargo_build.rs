//! `flamegraph::cargo::build` against a real cargo workspace: `fixtures/cargo-workspace`, copied
//! to a temporary directory so its `target/` never lands in the repository. Every built
//! executable is run once to prove it is the one that was asked for.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flamegraph::cargo::{build, BuiltTarget, CargoError, CargoOptions, UnitTestKind};
use tempfile::TempDir;

fn fixture_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cargo-workspace")
}

/// Copies the fixture workspace into a new temporary directory.
fn copy_fixture() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    sync_dir(&fixture_source(), dir.path());
    dir
}

/// Copies the files of `from` that differ in `to`, leaving equal files (and their mtimes) alone so
/// cargo does not rebuild them.
fn sync_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == "Cargo.lock" {
            continue;
        }
        let dest = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            sync_dir(&entry.path(), &dest);
        } else {
            let content = std::fs::read(entry.path()).unwrap();
            if std::fs::read(&dest).ok().as_ref() != Some(&content) {
                std::fs::write(&dest, content).unwrap();
            }
        }
    }
}

/// One copy shared by the tests of this binary, in cargo's per-project scratch directory so its
/// `target/` is reused across runs. Tests that would overwrite an executable another test runs
/// (same path, other features) use their own temporary copy.
fn shared_fixture() -> &'static Path {
    static FIXTURE: OnceLock<PathBuf> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cargo-workspace");
        sync_dir(&fixture_source(), &dir);
        dir
    })
}

/// Options pointing at the root manifest of the shared fixture.
fn options() -> CargoOptions {
    options_in(shared_fixture())
}

fn options_in(workspace: &Path) -> CargoOptions {
    CargoOptions {
        manifest_path: Some(workspace.join("Cargo.toml")),
        ..Default::default()
    }
}

/// Runs the built executable with its arguments plus `extra`; returns its stdout, asserting success.
fn run(built: &BuiltTarget, extra: &[&str]) -> String {
    let output = Command::new(&built.executable)
        .args(&built.args)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}",
        built.executable.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn path_has(path: &Path, component: &str) -> bool {
    path.components().any(|c| c.as_os_str() == component)
}

#[test]
fn bin_by_name() {
    let built = build(&CargoOptions {
        bin: Some("other".into()),
        ..options()
    })
    .unwrap();
    assert_eq!(run(&built, &[]).trim(), "other");
    assert!(path_has(&built.executable, "release"), "{built:?}");
    assert!(built.args.is_empty());
}

#[test]
fn package_with_one_bin_is_selected_automatically() {
    let built = build(&CargoOptions {
        package: Some("lib-crate".into()),
        ..options()
    })
    .unwrap();
    assert_eq!(run(&built, &[]).trim(), "lib-tool true");
    assert!(
        built.notes.iter().any(|n| n.contains("lib-tool")),
        "{built:?}"
    );
}

#[test]
fn default_run_picks_among_several_bins() {
    let built = build(&CargoOptions {
        package: Some("app".into()),
        ..options()
    })
    .unwrap();
    assert_eq!(run(&built, &[]).trim(), "app: plain");
    assert!(built.notes.is_empty(), "{built:?}");
}

#[test]
fn several_bins_in_the_workspace_are_listed() {
    let err = build(&options()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, CargoError::AmbiguousTarget { .. }), "{err:?}");
    assert!(message.contains("`-p app --bin app`"), "{message}");
    assert!(
        message.contains("`-p lib-crate --bin lib-tool`"),
        "{message}"
    );
    // `other` is not a candidate: `default-run` makes `app` the one to run in its package.
    assert!(!message.contains("--bin other"), "{message}");
}

#[test]
fn unknown_package_lists_members() {
    let err = build(&CargoOptions {
        package: Some("nope".into()),
        ..options()
    })
    .unwrap_err();
    assert!(err.to_string().contains("app, lib-crate"), "{err}");
}

#[test]
fn example() {
    let built = build(&CargoOptions {
        example: Some("demo".into()),
        ..options()
    })
    .unwrap();
    assert_eq!(run(&built, &[]).trim(), "demo true");
    assert!(path_has(&built.executable, "examples"), "{built:?}");
}

#[test]
fn missing_example_says_cargo_failed_and_lists_examples() {
    let err = build(&CargoOptions {
        example: Some("nope".into()),
        ..options()
    })
    .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, CargoError::BuildFailed { .. }), "{err:?}");
    assert!(message.contains("exit status: 101"), "{message}");
    assert!(message.contains("`--example demo`"), "{message}");
}

#[test]
fn integration_test() {
    let built = build(&CargoOptions {
        test: Some("it".into()),
        trailing_args: vec!["--exact".into(), "integration_test_burns".into()],
        ..options()
    })
    .unwrap();
    assert_eq!(built.args, ["--exact", "integration_test_burns"]);
    assert!(run(&built, &[]).contains("1 passed"));
    assert!(run(&built, &["--list"]).contains("integration_test_burns: test"));
}

#[test]
fn bench_gets_bench_argument_first() {
    let built = build(&CargoOptions {
        bench: Some("bench".into()),
        trailing_args: vec!["filter".into()],
        ..options()
    })
    .unwrap();
    assert_eq!(built.args, ["--bench", "filter"]);
    // The fixture bench exits with an error unless it received `--bench`.
    assert_eq!(run(&built, &[]).trim(), "bench ran true");
    // The bench profile inherits release, which has no debug info in the fixture.
    assert!(
        built.warnings.iter().any(|w| w.contains("[profile.bench]")),
        "{built:?}"
    );
}

#[test]
fn unit_test_of_library_is_the_default() {
    let built = build(&CargoOptions {
        package: Some("lib-crate".into()),
        unit_test: Some(None),
        ..options()
    })
    .unwrap();
    let list = run(&built, &["--list"]);
    assert!(list.contains("tests::lib_unit_test_burns: test"), "{list}");
    assert!(run(&built, &[]).contains("1 passed"));
}

#[test]
fn unit_test_kind_picks_bin_over_lib_of_same_name() {
    let lib = build(&CargoOptions {
        unit_test: Some(Some("app".into())),
        ..options()
    })
    .unwrap();
    let list = run(&lib, &["--list"]);
    assert!(list.contains("tests::app_lib_unit_test: test"), "{list}");

    let bin = build(&CargoOptions {
        unit_test: Some(Some("app".into())),
        unit_test_kind: Some(UnitTestKind::Bin),
        ..options()
    })
    .unwrap();
    let list = run(&bin, &["--list"]);
    assert!(list.contains("tests::app_bin_unit_test: test"), "{list}");
    assert!(!list.contains("app_lib_unit_test"), "{list}");
}

#[test]
fn unit_test_without_name_in_workspace_lists_libraries() {
    let err = build(&CargoOptions {
        unit_test: Some(None),
        ..options()
    })
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("-p app --unit-test app"), "{message}");
    assert!(
        message.contains("-p lib-crate --unit-test lib_crate"),
        "{message}"
    );
}

#[test]
fn unit_bench_runs_harness_with_bench_argument() {
    let built = build(&CargoOptions {
        package: Some("lib-crate".into()),
        unit_bench: Some(Some("lib-crate".into())),
        unit_test_kind: Some(UnitTestKind::Lib),
        ..options()
    })
    .unwrap();
    assert_eq!(built.args, ["--bench"]);
    let list = run(&built, &["--list"]);
    assert!(list.contains("tests::lib_unit_test_burns"), "{list}");
}

#[test]
fn features_change_the_binary() {
    // Own copy: the shared one's `target/release/app` is run by another test without the feature.
    let workspace = copy_fixture();
    let with = build(&CargoOptions {
        package: Some("app".into()),
        bin: Some("app".into()),
        features: Some("extra".into()),
        ..options_in(workspace.path())
    })
    .unwrap();
    assert_eq!(run(&with, &[]).trim(), "app: extra");
    let without = build(&CargoOptions {
        package: Some("app".into()),
        bin: Some("app".into()),
        ..options_in(workspace.path())
    })
    .unwrap();
    assert_eq!(run(&without, &[]).trim(), "app: plain");
}

fn host_triple() -> String {
    let output = Command::new("rustc").arg("-vV").output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_owned()
}

#[test]
fn target_triple_with_bin() {
    let triple = host_triple();
    let built = build(&CargoOptions {
        bin: Some("other".into()),
        target: Some(triple.clone()),
        trailing_args: vec!["ignored-arg".into()],
        ..options()
    })
    .unwrap();
    assert!(path_has(&built.executable, &triple), "{built:?}");
    assert_eq!(run(&built, &[]).trim(), "other");
}

fn build_other_with(options: CargoOptions) -> BuiltTarget {
    let built = build(&CargoOptions {
        bin: Some("other".into()),
        ..options
    })
    .unwrap();
    assert_eq!(run(&built, &[]).trim(), "other");
    built
}

#[test]
fn dev_and_profile_select_the_profile_directory_and_debug_warning() {
    let dev = build_other_with(CargoOptions {
        dev: true,
        ..options()
    });
    assert!(path_has(&dev.executable, "debug"), "{dev:?}");
    assert!(dev.warnings.is_empty(), "{dev:?}");

    let nodebug = build_other_with(CargoOptions {
        profile: Some("nodebug".into()),
        ..options()
    });
    assert!(path_has(&nodebug.executable, "nodebug"), "{nodebug:?}");
    let [warning] = nodebug.warnings.as_slice() else {
        panic!("expected one warning: {nodebug:?}");
    };
    assert!(warning.contains("[profile.nodebug]"), "{warning}");
    assert!(warning.contains("debug = true"), "{warning}");
    assert!(
        warning.contains("CARGO_PROFILE_NODEBUG_DEBUG=true"),
        "{warning}"
    );

    let withdebug = build_other_with(CargoOptions {
        profile: Some("withdebug".into()),
        // `--profile` wins over `--dev`.
        dev: true,
        ..options()
    });
    assert!(
        path_has(&withdebug.executable, "withdebug"),
        "{withdebug:?}"
    );
    assert!(withdebug.warnings.is_empty(), "{withdebug:?}");
}

#[test]
fn executable_path_is_absolute() {
    let built = build_other_with(options());
    let path: &PathBuf = &built.executable;
    assert!(path.is_absolute() && path.is_file(), "{path:?}");
}

/// Runs in a child copy of this test binary whose `CARGO` points nowhere (see below), so the
/// environment of the parallel tests is never changed.
#[test]
#[ignore = "run by cargo_not_found_is_reported with CARGO set to a missing program"]
fn child_cargo_not_found() {
    let missing = std::env::var("CARGO").unwrap();
    // The pristine fixture: nothing gets built, and the parent's shared copy is left alone.
    let options = || options_in(&fixture_source());
    for request in [
        CargoOptions {
            bin: Some("other".into()),
            ..options()
        },
        options(),
    ] {
        let err = build(&request).unwrap_err();
        assert!(matches!(err, CargoError::CargoNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains(&missing), "{err}");
    }
}

#[test]
fn cargo_not_found_is_reported() {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_cargo_not_found", "--ignored"])
        .env("CARGO", "/nonexistent/cargo-for-flamegraph-test")
        .status()
        .unwrap();
    assert!(status.success());
}

/// `cargo flamegraph --bench` end to end: builds through cargo, passes `--bench`, profiles
/// with the native sampler and draws the bench's hot function.
#[test]
fn cargo_flamegraph_profiles_a_bench_end_to_end() {
    let workspace = shared_fixture();
    let out_dir = tempfile::tempdir().unwrap();
    let folded = out_dir.path().join("bench.folded");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-flamegraph"))
        .current_dir(workspace)
        .args(["flamegraph", "--bench", "bench", "-F", "4999", "-o"])
        .arg(&folded)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&folded).unwrap();
    assert!(
        text.contains("lib_crate::burn") || text.contains("bench::main"),
        "{text}"
    );
    // The bench profile of the fixture has no debug info: the user is told how to fix it.
    assert!(
        stderr.contains("add `debug = true` under `[profile.bench]` in Cargo.toml, or set `CARGO_PROFILE_BENCH_DEBUG=true`"),
        "{stderr}"
    );
}
