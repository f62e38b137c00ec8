//! Running a manifest across processes: the supervisor side (create the rings, start one worker
//! per process group, run its own part, watch the workers) and the worker side.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::manifest::build::{build_local, ProcResources};
use crate::manifest::{self, Manifest};
use crate::pipeline::StopHandle;
use crate::run::Report;
use crate::shm::{Ring, ShmRegion};
use crate::supervisor::plan::Plan;
use crate::RunError;

/// Bytes of each shared-memory ring between two processes.
const RING_BYTES: usize = 1 << 20;
/// The environment variable that tells a worker where its rings' descriptors start.
const ENV_FD_BASE: &str = "TRIBUTARY_FD_BASE";
/// The environment variable that tells a worker the descriptor of the cycle counters.
const ENV_CONTROL_FD: &str = "TRIBUTARY_CONTROL_FD";

/// How a manifest run ended, for the exit status.
#[derive(Debug)]
pub enum Outcome {
    /// Every sink flushed; exit 0.
    Success(Report),
    /// Something failed; the message says what; exit non-zero.
    Failed(String),
}

fn fail(msg: impl Into<String>) -> Outcome {
    Outcome::Failed(msg.into())
}

/// Runs a validated manifest: the supervisor's own operators here, each process group in a
/// worker process, all joined by shared-memory rings.
pub fn run_manifest(m: &Manifest, stop: Option<StopHandle>) -> Outcome {
    let plan = Plan::new(m);
    let started = Instant::now();
    // Shared memory: one ring per link that crosses processes, one counter per cycle spanning them.
    let mut rings = Vec::with_capacity(plan.rings.len());
    for r in &plan.rings {
        match Ring::create_region(RING_BYTES) {
            Ok(reg) => rings.push(reg),
            Err(e) => {
                return fail(format!(
                    "cannot create the ring for stream \"{}\": {e}",
                    r.stream
                ))
            }
        }
    }
    let control = if plan.spanning.is_empty() {
        None
    } else {
        match ShmRegion::create("tributary-cycles", plan.spanning.len() * 8) {
            Ok(reg) => {
                for (i, c) in plan.spanning.iter().enumerate() {
                    // SAFETY: the region holds one aligned i64 per spanning cycle.
                    let a = unsafe { &*(reg.as_ptr() as *const AtomicI64).add(i) };
                    a.store(c.initial, std::sync::atomic::Ordering::Release);
                }
                Some(Arc::new(reg))
            }
            Err(e) => return fail(format!("cannot create the cycle counters: {e}")),
        }
    };
    // Workers: the same executable in the worker role, one per process group.
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return fail(format!(
                "cannot find this program's executable to start workers: {e}"
            ))
        }
    };
    let fd_base = rings
        .iter()
        .map(|r| r.fd().as_raw_fd())
        .chain(control.iter().map(|c| c.fd().as_raw_fd()))
        .max()
        .unwrap_or(2)
        + 2;
    let mut children: Vec<(String, Child)> = vec![];
    for (p, name) in plan.procs.iter().enumerate().skip(1) {
        let mut cmd = Command::new(&exe);
        cmd.arg("__worker")
            .arg(&m.path)
            .arg(name)
            .env(ENV_FD_BASE, fd_base.to_string())
            .stdin(
                // The worker hosting `source.stdin` reads the supervisor's standard input.
                if (0..m.operators.len())
                    .any(|i| plan.op_proc[i] == p && m.operators[i].kind == "source.stdin")
                {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                },
            );
        if let Some(c) = &control {
            c.pass_to_child(&mut cmd, fd_base - 1);
            cmd.env(ENV_CONTROL_FD, (fd_base - 1).to_string());
        }
        for (ri, r) in plan.rings.iter().enumerate() {
            if plan.op_proc[r.producer] == p || plan.op_proc[r.consumer] == p {
                rings[ri].pass_to_child(&mut cmd, fd_base + ri as i32);
            }
        }
        die_with_parent(&mut cmd);
        match cmd.spawn() {
            Ok(child) => children.push((name.clone(), child)),
            Err(e) => {
                kill_all(&mut children);
                return fail(format!("cannot start the worker of group \"{name}\": {e}"));
            }
        }
    }
    let mut res = ProcResources {
        rings: rings
            .into_iter()
            .enumerate()
            .map(|(ri, reg)| {
                let r = &plan.rings[ri];
                (plan.op_proc[r.producer] == 0 || plan.op_proc[r.consumer] == 0).then_some(reg)
            })
            .collect(),
        control,
    };
    let part = match build_local(m, &plan, 0, &mut res) {
        Ok(p) => p,
        Err(e) => {
            kill_all(&mut children);
            return fail(e.to_string());
        }
    };
    let local_stop = part.graph.stop_handle();
    if let Some(s) = stop {
        // Forward an outside stop (a signal) to the local run.
        let ls = local_stop.clone();
        std::thread::spawn(move || {
            while !s.is_stopped() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            ls.stop();
        });
    }
    // Watch the workers: the first that fails stops everything.
    let children = Arc::new(Mutex::new(children));
    let worker_failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let watcher = {
        let children = children.clone();
        let failure = worker_failure.clone();
        let ls = local_stop.clone();
        std::thread::spawn(move || watch(children, failure, ls))
    };
    let result = part.graph.run();
    let mut relay_errors = vec![];
    for r in part.relays {
        match r.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => relay_errors.push(e.to_string()),
            Err(_) => relay_errors.push("a link thread panicked".into()),
        }
    }
    let _ = watcher.join();
    if let Some(f) = worker_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return fail(f);
    }
    match result {
        Ok(mut report) => {
            if let Some(e) = relay_errors.first() {
                return fail(e.clone());
            }
            report.wall = started.elapsed();
            Outcome::Success(report)
        }
        Err(RunError::Failed(f, _)) => fail(
            f.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Err(e) => fail(e.to_string()),
    }
}

/// Waits for every worker; on the first failure, kills the others and stops the local run.
fn watch(
    children: Arc<Mutex<Vec<(String, Child)>>>,
    failure: Arc<Mutex<Option<String>>>,
    local: StopHandle,
) {
    loop {
        let mut guard = children.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_empty() {
            return;
        }
        let mut i = 0;
        let mut failed = None;
        while i < guard.len() {
            match guard[i].1.try_wait() {
                Ok(Some(status)) => {
                    let (name, _) = guard.remove(i);
                    if status.code() == Some(1) {
                        // An operator failed there; the worker drained what it had accepted
                        // and ended its streams, so the others finish on their own.
                        let mut f = failure.lock().unwrap_or_else(|e| e.into_inner());
                        f.get_or_insert_with(|| format!("process group \"{name}\" failed"));
                    } else if !status.success() {
                        failed = Some(format!("process group \"{name}\" died ({status})"));
                        break;
                    }
                }
                Ok(None) => i += 1,
                Err(e) => {
                    let (name, _) = guard.remove(i);
                    failed = Some(format!("cannot wait for process group \"{name}\": {e}"));
                    break;
                }
            }
        }
        if let Some(f) = failed {
            kill_all(&mut guard);
            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
            local.stop();
            return;
        }
        drop(guard);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn kill_all(children: &mut Vec<(String, Child)>) {
    for (_, c) in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    children.clear();
}

/// Makes the child die when the supervisor dies, even by SIGKILL.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("the supervisor exited"));
            }
            Ok(())
        });
    }
}

fn env_fd(name: &str) -> Result<Option<i32>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v} is not a descriptor number")),
        Err(_) => Ok(None),
    }
}

/// The worker role: runs the operators of process group `group` of the manifest at `path`.
pub fn run_worker(path: &Path, group: &str) -> Result<(), String> {
    let m = manifest::load(path).map_err(|d| d.render())?;
    let plan = Plan::new(&m);
    let proc = plan
        .proc_index(group)
        .ok_or_else(|| format!("no process group \"{group}\" in {}", path.display()))?;
    let base = env_fd(ENV_FD_BASE)?.ok_or("started without its rings (TRIBUTARY_FD_BASE)")?;
    let control = match env_fd(ENV_CONTROL_FD)? {
        // SAFETY: the supervisor handed this descriptor to this process, and nothing else owns it.
        Some(fd) => Some(Arc::new(
            ShmRegion::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let mut rings = Vec::with_capacity(plan.rings.len());
    for (ri, r) in plan.rings.iter().enumerate() {
        if plan.op_proc[r.producer] == proc || plan.op_proc[r.consumer] == proc {
            // SAFETY: as above, one descriptor per ring this process touches.
            let fd = unsafe { OwnedFd::from_raw_fd(base + ri as i32) };
            rings.push(Some(
                ShmRegion::from_fd(fd).map_err(|e| format!("ring \"{}\": {e}", r.stream))?,
            ));
        } else {
            rings.push(None);
        }
    }
    let mut res = ProcResources { rings, control };
    let part = build_local(&m, &plan, proc, &mut res).map_err(|e| e.to_string())?;
    let result = part.graph.run();
    let mut errors = vec![];
    for r in part.relays {
        match r.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("a link thread panicked".into()),
        }
    }
    match result {
        Ok(_) if errors.is_empty() => Ok(()),
        Ok(_) => Err(errors.join("\n")),
        Err(RunError::Failed(f, _)) => Err(f
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n")),
        Err(e) => Err(e.to_string()),
    }
}
