//! `chorusd`: the chorus daemon.

use chorus::config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "chorusd",
    version,
    about = "chorus multiroom audio daemon (controller and/or speaker)"
)]
struct Cli {
    /// Config file.
    #[arg(short, long, default_value = config::DEFAULT_PATH, global = true)]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the roles the config enables (the default).
    Run,
    /// Validate a config file and exit (non-zero when invalid).
    CheckConfig {
        /// Config file (default: --config).
        path: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::CheckConfig { path } => {
            let path = path.unwrap_or(cli.config);
            match config::load(&path) {
                Ok(cfg) => {
                    let roles: Vec<&str> = [
                        ("controller", cfg.controller.enabled),
                        ("speaker", cfg.speaker.enabled),
                    ]
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(n, _)| *n)
                    .collect();
                    println!(
                        "{}: OK ({}; {})",
                        path.display(),
                        roles.join(" + "),
                        cfg.protection()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("chorusd: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Run => {
            let cfg = match config::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("chorusd: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&cfg.log_level);
            match chorus::daemon::run(cfg, cli.config.clone()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    eprintln!("chorusd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Structured logs to journald when systemd connected our stderr to the journal; readable
/// stderr otherwise. The level comes from the config; `RUST_LOG` overrides it.
fn init_logging(level: &str) {
    if systemd_journal_logger::connected_to_journal() {
        let filter = std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| v.parse::<log::LevelFilter>().ok())
            .or_else(|| level.parse().ok())
            .unwrap_or(log::LevelFilter::Info);
        let installed = systemd_journal_logger::JournalLog::new()
            .map(|j| j.with_syslog_identifier("chorusd".into()).install().is_ok())
            .unwrap_or(false);
        if installed {
            log::set_max_level(filter);
            return;
        }
    }
    // With RUST_LOG, its directives rule (no live change); otherwise everything reaches the
    // logger and the global maximum filters, so that SIGHUP can change the level.
    if std::env::var_os("RUST_LOG").is_some() {
        env_logger::Builder::from_env(env_logger::Env::default())
            .format_timestamp_millis()
            .init();
    } else {
        env_logger::Builder::new()
            .filter_level(log::LevelFilter::Trace)
            .format_timestamp_millis()
            .init();
        log::set_max_level(level.parse().unwrap_or(log::LevelFilter::Info));
    }
}
