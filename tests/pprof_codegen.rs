//! `src/output/pprof/proto.rs` is prost's code for `proto/profile.proto`, committed so that no
//! user needs `protoc`. This regenerates it with the pure-Rust protox + prost-build into a
//! temporary directory and compares; `FLAMEGRAPH_BLESS=1` rewrites the committed file.

use std::path::PathBuf;

#[test]
fn committed_pprof_code_matches_the_schema() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([root.join("proto/profile.proto")], [root.join("proto")])
        .expect("proto/profile.proto compiles");
    let out = tempfile::tempdir().unwrap();
    prost_build::Config::new()
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("prost-build generates code");
    let generated = std::fs::read_to_string(out.path().join("perftools.profiles.rs")).unwrap();
    let committed_path = root.join("src/output/pprof/proto.rs");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if std::env::var_os("FLAMEGRAPH_BLESS").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
        return;
    }
    assert!(
        generated == committed,
        "{} is out of date with proto/profile.proto: rerun with FLAMEGRAPH_BLESS=1",
        committed_path.display()
    );
}
