//! `cargo flamegraph [OPTIONS] [-- ARGS]`: builds a target with cargo, then profiles it.

use std::process::ExitCode;

use clap::{Args, Parser};
use flamegraph::cargo::{CargoOptions, UnitTestKind};
use flamegraph::cli::CommonArgs;
use flamegraph::options::Workload;

mod common;

#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo")]
enum Cli {
    /// A cargo subcommand for generating flamegraphs
    #[command(version, long_about = None)]
    Flamegraph(Opt),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum UnitTestKindArg {
    Bin,
    Lib,
}

#[derive(Debug, Args)]
struct Opt {
    /// Generate shell completions for the given shell (they complete `cargo-flamegraph`)
    #[arg(long = "completions", value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,

    /// Build with the dev profile
    #[arg(long)]
    dev: bool,

    /// Build with the specified profile
    #[arg(long)]
    profile: Option<String>,

    /// Package with the binary to run
    #[arg(short, long)]
    package: Option<String>,

    /// Binary to run
    #[arg(short, long, group = "exec-args")]
    bin: Option<String>,

    /// Build for the target triple (combines with --bin, --example, ...)
    #[arg(long)]
    target: Option<String>,

    /// Example to run
    #[arg(long, group = "exec-args")]
    example: Option<String>,

    /// Test binary to run (currently profiles the test harness and all tests in the binary)
    #[arg(long, group = "exec-args")]
    test: Option<String>,

    /// Crate target to unit test, <unit-test> may be omitted if crate only has one target
    /// (currently profiles the test harness and all tests in the binary; test selection can be
    /// passed as trailing arguments after `--` as separator)
    #[arg(long, group = "exec-args")]
    unit_test: Option<Option<String>>,

    /// Kind of target (lib or bin) when running with <unit-test> which may be required when we
    /// have two targets with the same name
    #[arg(long, value_enum, requires = "unit_test")]
    unit_test_kind: Option<UnitTestKindArg>,

    /// Crate target to unit benchmark, <bench> may be omitted if crate only has one target
    /// (currently profiles the test harness and all tests in the binary; test selection can be
    /// passed as trailing arguments after `--` as separator)
    #[arg(long, group = "exec-args")]
    unit_bench: Option<Option<String>>,

    /// Benchmark to run
    #[arg(long, group = "exec-args")]
    bench: Option<String>,

    /// Path to Cargo.toml
    #[arg(long)]
    manifest_path: Option<std::path::PathBuf>,

    /// Build features to enable
    #[arg(short, long)]
    features: Option<String>,

    /// Disable default features
    #[arg(long)]
    no_default_features: bool,

    /// No-op. For compatibility with `cargo run --release`.
    #[arg(short, long)]
    release: bool,

    #[command(flatten)]
    common: CommonArgs,

    /// Trailing arguments passed to the binary being profiled.
    #[arg(last = true)]
    trailing_arguments: Vec<String>,
}

fn main() -> ExitCode {
    let Cli::Flamegraph(opt) = Cli::parse();
    if let Some(shell) = opt.completions {
        let mut command = Opt::augment_args(clap::Command::new("cargo-flamegraph"));
        clap_complete::generate(
            shell,
            &mut command,
            "cargo-flamegraph",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    common::report(try_main(opt))
}

fn try_main(opt: Opt) -> anyhow::Result<ExitCode> {
    if opt.common.sudo_child {
        // The recorder `--root` started under sudo: the parent built the target as the user
        // and passed the whole command after `--`.
        let command = opt.trailing_arguments.iter().map(Into::into).collect();
        let config = opt.common.into_config(Workload::Command(command))?;
        return common::profile_maybe_as_root(config, true, &[], None);
    }
    let cargo = CargoOptions {
        dev: opt.dev,
        profile: opt.profile,
        package: opt.package,
        bin: opt.bin,
        target: opt.target,
        example: opt.example,
        test: opt.test,
        unit_test: opt.unit_test,
        unit_test_kind: opt.unit_test_kind.map(|k| match k {
            UnitTestKindArg::Bin => UnitTestKind::Bin,
            UnitTestKindArg::Lib => UnitTestKind::Lib,
        }),
        unit_bench: opt.unit_bench,
        bench: opt.bench,
        manifest_path: opt.manifest_path,
        features: opt.features,
        no_default_features: opt.no_default_features,
        release: opt.release,
        verbose: opt.common.verbose,
        trailing_args: opt.trailing_arguments,
    };
    let built = flamegraph::cargo::build(&cargo)?;
    if opt.common.verbose {
        for note in &built.notes {
            eprintln!("flamegraph: {note}");
        }
    }
    for warning in &built.warnings {
        eprintln!("flamegraph: warning: {warning}");
    }
    let mut command = vec![built.executable.into_os_string()];
    command.extend(built.args);
    let warnings = opt.common.warnings();
    let config = opt.common.into_config(Workload::Command(command.clone()))?;
    common::warn(&warnings);
    let options = common::sudo::options_from_args();
    common::profile_maybe_as_root(config, false, &options, Some(command))
}
