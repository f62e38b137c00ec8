//! Restart policies (Erlang/OTP meanings) and the record of restarts of one run.
//!
//! A failure is charged to a group (the process group that died or hung, or the group of the
//! operator that failed; operators without a group belong to the supervisor, which follows the
//! default policy). The group's `restart` decides whether it is restarted at all; more than
//! `max_restarts` restarts within `within` give up; the delay before a restart doubles from
//! the first `backoff` bound up to the second, and starts over after `within` without one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::manifest::schema::{GroupDecl, Manifest, Restart};
use crate::run::{OpRestart, RestartBudget};

/// The name failures of operators without a group are charged to.
pub const SUPERVISOR_GROUP: &str = "(supervisor)";

/// Why a part of the run ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The process died: a signal (SIGKILL, SIGSEGV, OOM kill), abort, or an unexpected status.
    Crashed,
    /// The group stopped making progress for longer than its `heartbeat_timeout`.
    Hung,
    /// An operator failed (a panic in native code, a script error).
    OperatorFailed,
    /// The process was stopped cleanly by a signal sent to it alone (not by the supervisor).
    Shutdown,
    /// A bad input line under `on_error = "fail"`: restarting would read it again.
    DataError,
}

impl Cause {
    /// How the cause reads in logs and summaries.
    pub fn label(&self) -> &'static str {
        match self {
            Cause::Crashed => "crashed",
            Cause::Hung => "hung",
            Cause::OperatorFailed => "operator failed",
            Cause::Shutdown => "shut down",
            Cause::DataError => "data error",
        }
    }
}

/// One failure of one attempt of the run.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The group charged with it.
    pub group: String,
    /// What kind of failure.
    pub cause: Cause,
    /// What happened, for people.
    pub message: String,
}

/// The restart policy of one group.
#[derive(Clone, Debug)]
pub struct Policy {
    /// permanent, transient or temporary.
    pub restart: Restart,
    /// At most this many restarts within `within`.
    pub max_restarts: u32,
    /// The restart-intensity period.
    pub within: Duration,
    /// First and largest delay before a restart.
    pub backoff: (Duration, Duration),
}

impl Policy {
    /// The policy of a declared group.
    pub fn of(g: &GroupDecl) -> Self {
        Policy {
            restart: g.restart,
            max_restarts: g.max_restarts,
            within: g.within,
            backoff: g.backoff,
        }
    }

    /// The intensity and backoff limits of the policy.
    pub fn limits(&self) -> OpRestart {
        OpRestart {
            max_restarts: self.max_restarts,
            within: self.within,
            backoff: self.backoff,
        }
    }

    /// The policy of group `name` in `m` (the defaults for the supervisor's own operators).
    pub fn for_group(m: &Manifest, name: &str) -> Self {
        match m.groups.iter().find(|g| g.name == name) {
            Some(g) => Policy::of(g),
            None => Policy::of(&GroupDecl::default_for(name)),
        }
    }
}

/// What to do about a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Restart after this delay.
    Restart(Duration),
    /// Do not restart (a clean shutdown of a transient or temporary group): carry on.
    Ignore,
    /// Give up: the run ends with this message.
    GiveUp(String),
}

/// The restarts of one group.
#[derive(Clone, Debug, Default)]
pub struct GroupRestarts {
    /// The restart intensity and backoff.
    budget: RestartBudget,
    /// Every restart of the run: its cause and message.
    pub events: Vec<(Cause, String)>,
    /// Time from each failure to the restarted attempt running again.
    pub recovery: Vec<Duration>,
}

/// The restarts of a whole run, by group.
#[derive(Debug, Default)]
pub struct Restarts {
    /// By group name.
    pub groups: HashMap<String, GroupRestarts>,
}

impl Restarts {
    /// Decides about `f` under `policy` at `now`, and records a restart if there is one.
    pub fn decide(&mut self, f: &Failure, policy: &Policy, now: Instant) -> Decision {
        if f.cause == Cause::DataError {
            return Decision::GiveUp(format!("{} (a data error: not retried)", f.message));
        }
        if f.cause == Cause::OperatorFailed {
            // The operator was restarted in place per this same policy until it ran out (or
            // its group is temporary): nothing is left to try.
            return Decision::GiveUp(f.message.clone());
        }
        match (policy.restart, &f.cause) {
            (Restart::Temporary, Cause::Shutdown) | (Restart::Transient, Cause::Shutdown) => {
                return Decision::Ignore
            }
            (Restart::Temporary, _) => {
                return Decision::GiveUp(format!(
                    "{}; group \"{}\" is temporary: not restarted",
                    f.message, f.group
                ))
            }
            _ => {}
        }
        let g = self.groups.entry(f.group.clone()).or_default();
        let delay = match g.budget.next(&policy.limits(), now) {
            Ok(d) => d,
            Err(n) => {
                return Decision::GiveUp(format!(
                    "group \"{}\" failed {} times within {:?} (max_restarts = {}): giving up; last failure: {}",
                    f.group,
                    n + 1,
                    policy.within,
                    policy.max_restarts,
                    f.message
                ))
            }
        };
        g.events.push((f.cause.clone(), f.message.clone()));
        Decision::Restart(delay)
    }

    /// Records how long the recovery from the last restart of `group` took.
    pub fn recovered(&mut self, group: &str, took: Duration) {
        if let Some(g) = self.groups.get_mut(group) {
            g.recovery.push(took);
        }
    }

    /// Total restarts.
    pub fn total(&self) -> usize {
        self.groups.values().map(|g| g.events.len()).sum()
    }

    /// One line per group for the end-of-run summary: how often, why, how long recovery took.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut names: Vec<&String> = self.groups.keys().collect();
        names.sort();
        let mut out = vec![];
        for n in names {
            let g = &self.groups[n];
            if g.events.is_empty() {
                continue;
            }
            let mut causes: Vec<(String, usize)> = vec![];
            for (c, _) in &g.events {
                match causes.iter_mut().find(|x| x.0 == c.label()) {
                    Some(x) => x.1 += 1,
                    None => causes.push((c.label().to_string(), 1)),
                }
            }
            let causes: Vec<String> = causes.iter().map(|(c, k)| format!("{c} x{k}")).collect();
            let mut line = format!(
                "group \"{n}\": {} restart(s) ({})",
                g.events.len(),
                causes.join(", ")
            );
            if let Some(max) = g.recovery.iter().max() {
                let mut v = g.recovery.clone();
                v.sort();
                line.push_str(&format!(
                    ", recovery p50 {:.0} ms, max {:.0} ms",
                    v[v.len() / 2].as_secs_f64() * 1e3,
                    max.as_secs_f64() * 1e3
                ));
            }
            out.push(line);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(restart: Restart) -> Policy {
        Policy {
            restart,
            max_restarts: 3,
            within: Duration::from_secs(10),
            backoff: (Duration::from_millis(100), Duration::from_millis(350)),
        }
    }

    fn crash(group: &str) -> Failure {
        Failure {
            group: group.into(),
            cause: Cause::Crashed,
            message: format!("process group \"{group}\" was killed by SIGKILL"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_then_restarts_run_out() {
        let mut r = Restarts::default();
        let p = policy(Restart::Permanent);
        let t = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(r.decide(&crash("a"), &p, t), Decision::Restart(ms(100)));
        assert_eq!(
            r.decide(&crash("a"), &p, t + ms(1)),
            Decision::Restart(ms(200))
        );
        assert_eq!(
            r.decide(&crash("a"), &p, t + ms(2)),
            Decision::Restart(ms(350))
        );
        match r.decide(&crash("a"), &p, t + ms(3)) {
            Decision::GiveUp(m) => {
                assert!(m.contains("group \"a\" failed 4 times"), "{m}");
                assert!(m.contains("max_restarts = 3"), "{m}");
                assert!(m.contains("SIGKILL"), "{m}");
            }
            d => panic!("{d:?}"),
        }
        // Another group has its own budget.
        assert_eq!(
            r.decide(&crash("b"), &p, t + ms(4)),
            Decision::Restart(ms(100))
        );
        assert_eq!(r.total(), 4);
    }

    #[test]
    fn the_period_forgets_old_restarts_and_resets_the_backoff() {
        let mut r = Restarts::default();
        let p = policy(Restart::Permanent);
        let t = Instant::now();
        for i in 0..3 {
            assert!(matches!(
                r.decide(&crash("a"), &p, t + Duration::from_millis(i)),
                Decision::Restart(_)
            ));
        }
        let later = t + Duration::from_secs(11);
        assert_eq!(
            r.decide(&crash("a"), &p, later),
            Decision::Restart(Duration::from_millis(100))
        );
    }

    #[test]
    fn otp_restart_kinds() {
        let mut r = Restarts::default();
        let t = Instant::now();
        let shutdown = Failure {
            cause: Cause::Shutdown,
            ..crash("a")
        };
        assert!(matches!(
            r.decide(&crash("a"), &policy(Restart::Temporary), t),
            Decision::GiveUp(_)
        ));
        assert_eq!(
            r.decide(&shutdown, &policy(Restart::Temporary), t),
            Decision::Ignore
        );
        assert_eq!(
            r.decide(&shutdown, &policy(Restart::Transient), t),
            Decision::Ignore
        );
        assert!(matches!(
            r.decide(&crash("a"), &policy(Restart::Transient), t),
            Decision::Restart(_)
        ));
        assert!(matches!(
            r.decide(&shutdown, &policy(Restart::Permanent), t),
            Decision::Restart(_)
        ));
        let data = Failure {
            cause: Cause::DataError,
            ..crash("a")
        };
        assert!(matches!(
            r.decide(&data, &policy(Restart::Permanent), t),
            Decision::GiveUp(_)
        ));
    }
}
