//! An application binary with its own operator kinds (`examples/custom_kinds.rs`, built by
//! `cargo test` before the tests run) runs a manifest that uses them, in a process group too;
//! the plain `tributary` binary rejects the same manifest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The example binary: `target/<profile>/examples/custom_kinds`, next to this test's `deps`.
fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/custom_kinds");
    assert!(bin.exists(), "{} is not built", bin.display());
    bin
}

/// The example manifest, optionally edited, copied into a fresh temporary directory.
fn case(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/custom_kinds/pipeline.toml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), edit(text)).unwrap();
    dir
}

fn run(bin: &Path, dir: &Path) -> Output {
    Command::new(bin)
        .args(["run", "pipeline.toml"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn check_output(dir: &Path, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let written = std::fs::read_to_string(dir.join("out/high.jsonl")).unwrap();
    assert_eq!(written, "8.0\n14.5\n20.0\n", "{stderr}");
}

#[test]
fn custom_kinds_run_with_one_in_a_process_group() {
    let dir = case(|t| t);
    assert!(std::fs::read_to_string(dir.path().join("pipeline.toml"))
        .unwrap()
        .contains("placement = \"process\""));
    let out = run(&example_bin(), dir.path());
    check_output(dir.path(), &out);
}

#[test]
fn custom_kinds_run_in_one_process() {
    // Every operator in the supervisor: no group at all.
    let dir = case(|t| t.replace("group = \"scaler\"\n", ""));
    let out = run(&example_bin(), dir.path());
    check_output(dir.path(), &out);
}

#[test]
fn custom_kinds_wrong_element_fails_naming_it() {
    let dir = case(|t| t.replace("values = [1.5, 4,", "values = [1.5, \"four\","));
    let out = run(&example_bin(), dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("four") && stderr.contains("f64"),
        "{stderr}"
    );
}

#[test]
fn plain_tributary_rejects_custom_kinds() {
    let dir = case(|t| t);
    let out = run(Path::new(env!("CARGO_BIN_EXE_tributary")), dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown operator kind \"scale\""),
        "{stderr}"
    );
    assert!(!dir.path().join("out/high.jsonl").exists());
}
