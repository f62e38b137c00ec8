//! The `tributary` command line: `run`, `validate`, `graph`, and the hidden worker role.
//!
//! An application that embeds tributary calls [`main`] (or [`main_with`] and its own
//! operator kinds) from its own binary, so the worker
//! processes it starts are that binary too.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::manifest::{self, Manifest};
use crate::registry::Registry;
use crate::supervisor::process::{
    run_manifest_with, run_worker_with, ChaosOptions, Outcome, RunOptions,
};
use crate::supervisor::{signals, summary, summary_json};

/// How logs are written to standard error.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Parser, Debug)]
#[command(
    name = "tributary",
    version,
    about = "Run stream-processing pipelines described by manifests"
)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a pipeline manifest until every source is exhausted.
    Run {
        /// The manifest (TOML).
        manifest: PathBuf,
        /// Fault injection: SIGKILL a random worker process this many times during the run
        /// (to test recovery; 0: off).
        #[arg(long, default_value_t = 0, value_name = "N")]
        chaos_kills: u32,
        /// Fault injection: make this many random operators panic once, in one of their
        /// first batches (to test in-place restarts; 0: off).
        #[arg(long, default_value_t = 0, value_name = "N")]
        chaos_panics: u32,
        /// Mean time between injected kills (e.g. 200ms).
        #[arg(long, default_value = "200ms", value_parser = parse_duration_arg, value_name = "DURATION")]
        chaos_every: std::time::Duration,
        /// Seed of the fault injection's random choices (default: from the clock).
        #[arg(long, value_name = "SEED")]
        chaos_seed: Option<u64>,
    },
    /// Check a manifest without running it; report every error at once.
    Validate {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Print the pipeline as Graphviz DOT (groups as clusters).
    Graph {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Internal: run one process group of a manifest (started by `run`).
    #[command(name = "__worker", hide = true)]
    Worker {
        /// The manifest.
        manifest: PathBuf,
        /// The process group to run.
        group: String,
    },
}

fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("TRIBUTARY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => b.without_time().try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

fn load(path: &std::path::Path, reg: &Registry) -> Result<Manifest, ExitCode> {
    match manifest::load_with(path, &reg.kinds()) {
        Ok(m) => {
            for w in &m.warnings {
                eprintln!("{w}");
            }
            Ok(m)
        }
        Err(d) => {
            eprint!("{}", d.render());
            Err(ExitCode::from(2))
        }
    }
}

/// The entry point of the `tributary` binary (built-in operator kinds only).
pub fn main() -> ExitCode {
    main_with(Registry::default())
}

/// Exit status of a process that ended on a panic outside any operator (a runtime bug).
const INTERNAL_ERROR: i32 = 101;

/// The entry point of an application's binary that adds its own operator kinds: manifests may
/// use them, in process groups too (workers re-execute this binary).
pub fn main_with(registry: Registry) -> ExitCode {
    crate::malloc::tune();
    let cli = Cli::parse();
    init_logs(cli.log_format);
    // A panic in an operator is caught and handled (restarted, or reported with the operator
    // and element): log it as one line instead of a backtrace, unless RUST_BACKTRACE asks. Any
    // other panic is a bug of the runtime, after which the run could wait forever for what the
    // panicking task would have done: end the process (a worker is then restarted from its
    // last checkpoint by its supervisor, which sees it crash).
    let default_hook = std::panic::take_hook();
    let backtrace = std::env::var_os("RUST_BACKTRACE").is_some();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        if backtrace {
            default_hook(info);
        } else {
            tracing::error!(thread = name, "panic: {info}");
        }
        if !crate::operator::panic_is_handled() {
            tracing::error!(
                thread = name,
                "internal error: a panic outside any operator; this process ends (please report it)"
            );
            std::process::exit(INTERNAL_ERROR);
        }
    }));
    match cli.command {
        Cmd::Validate { manifest } => match load(&manifest, &registry) {
            Ok(m) => {
                eprintln!(
                    "{}: ok ({} operators, {} groups)",
                    manifest.display(),
                    m.operators.len(),
                    m.groups.len()
                );
                ExitCode::SUCCESS
            }
            Err(c) => c,
        },
        Cmd::Graph { manifest } => match load(&manifest, &registry) {
            Ok(m) => {
                print!("{}", crate::supervisor::dot::to_dot(&m));
                ExitCode::SUCCESS
            }
            Err(c) => c,
        },
        Cmd::Run {
            manifest,
            chaos_kills,
            chaos_panics,
            chaos_every,
            chaos_seed,
        } => {
            let m = match load(&manifest, &registry) {
                Ok(m) => m,
                Err(c) => return c,
            };
            // Run on the main thread: workers die with the thread that started them.
            let opts = RunOptions {
                stop: None,
                signals: true,
                live: true,
                registry,
                chaos: (chaos_kills > 0 || chaos_panics > 0).then(|| {
                    let seed = chaos_seed.unwrap_or_else(crate::recovery::now_micros);
                    tracing::info!(
                        seed,
                        kills = chaos_kills,
                        panics = chaos_panics,
                        "chaos: fault injection on"
                    );
                    ChaosOptions {
                        seed,
                        kills: chaos_kills,
                        every: chaos_every,
                        panics: chaos_panics,
                    }
                }),
            };
            let json = matches!(cli.log_format, LogFormat::Json);
            match run_manifest_with(&m, &opts) {
                Outcome::Success(report) => {
                    if json {
                        eprintln!("{}", summary_json(&report, "ok", None));
                    } else {
                        eprintln!("{}", summary(&report));
                    }
                    ExitCode::SUCCESS
                }
                Outcome::Stopped { report, signal } => {
                    let sig = signal.unwrap_or(libc::SIGINT);
                    if json {
                        eprintln!("{}", summary_json(&report, "stopped", None));
                    } else {
                        let name = nix::sys::signal::Signal::try_from(sig)
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_else(|_| format!("signal {sig}"));
                        eprintln!("stopped by {name}; {}", summary(&report));
                    }
                    ExitCode::from(signals::exit_status(sig))
                }
                Outcome::Failed { message, report } => {
                    if json {
                        eprintln!("{}", summary_json(&report, "failed", Some(&message)));
                    } else {
                        eprintln!("{}", summary(&report));
                        eprintln!("error: {message}");
                    }
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Worker { manifest, group } => match run_worker_with(&manifest, &group, &registry) {
            // Stopped by a signal sent to this worker alone: say so to the supervisor.
            Ok(()) => match signals::received() {
                Some(sig) => ExitCode::from(signals::exit_status(sig)),
                None => ExitCode::SUCCESS,
            },
            Err(msg) => {
                // An empty message: the supervisor got the failure and prints it.
                if !msg.is_empty() {
                    eprintln!("error: {msg}");
                }
                ExitCode::from(1)
            }
        },
    }
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::manifest::schema::parse_duration(s)
}
