//! Helpers shared by the integration tests that run the real binary.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Writes `text` as `pipeline.toml` in `dir`.
pub fn write_manifest(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("pipeline.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn start(manifest: &Path, extra: &[&str]) -> Child {
    start_with(manifest, extra, Stdio::null())
}

/// Starts `tributary run MANIFEST EXTRA...` with standard output going to `stdout`.
pub fn start_with(manifest: &Path, extra: &[&str], stdout: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("run")
        .arg(manifest)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit (at most `limit`), then returns its status and standard error.
pub fn finish(mut child: Child, limit: Duration) -> (ExitStatus, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

/// Live processes (not zombies) whose command line mentions `needle`.
pub fn procs_with(needle: &str) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.contains(needle) {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .map(|x| x.1.trim_start().starts_with('Z'))
                    .unwrap_or(false)
            })
            .unwrap_or(true);
        if !zombie {
            out.push(pid);
        }
    }
    out
}

/// The worker processes of the run of `manifest`.
pub fn workers(manifest: &Path) -> Vec<u32> {
    procs_with(&format!("__worker {}", manifest.display()))
}

/// Asserts that, within 5 s, no process whose command line names manifest `m` remains.
pub fn assert_no_process_of(m: &Path) {
    let needle = m.display().to_string();
    assert!(
        wait_for(Duration::from_secs(5), || procs_with(&needle).is_empty()),
        "a process of the run remains"
    );
}

pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Like [`finish`], also returning what the run wrote to standard output (piped).
pub fn finish_with_stdout(mut child: Child, limit: Duration) -> (ExitStatus, String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let (status, err) = finish(child, limit);
    (status, reader.join().unwrap(), err)
}
