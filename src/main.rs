//! The `mcpgate` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mcpgate::catalogue::ListKind;
use mcpgate::config::Config;

/// mimalloc instead of glibc's allocator: a call makes many small short-lived allocations on
/// several threads, where glibc's arenas (locks, `malloc_consolidate`) cost a fifth of the
/// gateway's CPU (measured with `scripts/bench.sh`, README "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mcpgate: one MCP endpoint in front of many MCP servers.
#[derive(Parser)]
#[command(version = mcpgate::VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: `text` or `json` (default: `telemetry.log_format` of the configuration
    /// served, else `text`).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway.
    Serve {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file without serving.
    Validate {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Connect to every upstream and print the merged catalogue.
    Catalogue {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check, explain and compare RBAC policy sets.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Work with the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Work with the configuration file format.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the JSON Schema of mcpgate.yaml (for editors and CI).
    Schema,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that audit files form one intact hash chain; name the first record that breaks
    /// it. Exit 0 intact, 1 broken, 2 when a file cannot be read.
    Verify {
        /// The chain key (`audit.key_file`), to check HMACs.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Accept a chain that does not start at seq 1 (older files removed).
        #[arg(long)]
        partial: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Audit files, in any order (the active one and the rotated ones).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate the policy set and warn about patterns that match nothing in the catalogue.
    Check {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Do not connect to the upstreams (no catalogue warnings).
        #[arg(long)]
        offline: bool,
    },
    /// Print the decision on one target for the principal of a claims file, and why.
    Explain {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// JSON object of token claims, e.g. {"sub": "alice", "groups": ["sre"]}.
        #[arg(long)]
        claims: PathBuf,
        /// Canonical target: `upstream/name` (the upstream's own tool, prompt or URI).
        #[arg(long)]
        target: String,
        /// Kind of target: tool, prompt, resource, resource_template, completion, task.
        #[arg(long, default_value = "tool")]
        kind: String,
        /// The API key name the principal used.
        #[arg(long)]
        api_key: Option<String>,
        /// The principal's TLS client certificate identity.
        #[arg(long)]
        mtls: Option<String>,
        /// Do not connect to the upstreams (tool annotations unknown).
        #[arg(long)]
        offline: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print which catalogue targets a principal gains and loses between two policy sets.
    Diff {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The policy directory in force.
        #[arg(long)]
        old: PathBuf,
        /// The proposed policy directory.
        #[arg(long)]
        new: PathBuf,
        /// JSON object of token claims.
        #[arg(long)]
        claims: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = cli.log_format.as_deref().map(|f| f == "json");
    // `serve` sets up its logs from its configuration (format, OTLP export); the other
    // commands log as the flag says.
    if !matches!(cli.command, Command::Serve { .. }) {
        mcpgate::telemetry::init_logging(json_logs.unwrap_or(false), None);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, json_logs)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, json_logs: Option<bool>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { config } => {
            let cfg = Config::load(&config)?;
            if cfg.policies.is_some() {
                let (set, mode) = mcpgate::cli::policy::load(&cfg)?;
                println!(
                    "policies: {} role(s), {:?} mode, hash {}",
                    set.roles.len(),
                    mode,
                    set.hash
                );
            }
            println!(
                "{}: valid ({} upstream(s): {})",
                config.display(),
                cfg.upstreams.len(),
                cfg.upstreams
                    .iter()
                    .map(|u| u.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let cfg = Config::load(&config)?;
            let exporter = mcpgate::telemetry::init_logging(
                json_logs.unwrap_or(cfg.telemetry.json_logs),
                cfg.telemetry.otlp.as_ref(),
            );
            // With the audit log on standard output, stdout carries audit records only.
            let audit_on_stdout = cfg
                .audit
                .as_ref()
                .is_some_and(|a| matches!(a.sink, mcpgate::config::AuditSink::Stdout));
            let say = |line: String| {
                if audit_on_stdout {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
            };
            // Listened for from before the listeners open: a SIGTERM that arrives as soon as
            // the gateway says it listens must start a graceful shutdown, not kill it.
            let mut signals = ShutdownSignals::install().context("cannot listen for signals")?;
            let hangups = reload_on_hangup().context("cannot listen for SIGHUP")?;
            let running = mcpgate::app::start(cfg).await.context("cannot start")?;
            hangups(running.reloader());
            say(format!("mcpgate listening on {}", running.mcp_url));
            if let Some(admin) = running.admin_addr {
                say(format!("mcpgate operations on http://{admin}/metrics"));
            }
            signals.recv().await;
            tracing::info!("shutting down (a second signal exits at once)");
            tokio::spawn(async move {
                signals.recv().await;
                tracing::warn!("second signal: exiting without finishing the shutdown");
                std::process::exit(1);
            });
            running.shutdown().await;
            if let Some(exporter) = exporter {
                // The SDK's exporter blocks while it sends the last batch.
                tokio::task::spawn_blocking(move || exporter.shutdown())
                    .await
                    .ok();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalogue { config, json } => catalogue(&Config::load(&config)?, json).await,
        Command::Policy(command) => policy(command).await,
        Command::Config(ConfigCommand::Schema) => {
            println!("{:#}", mcpgate::config::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify {
            key_file,
            partial,
            json,
            files,
        }) => audit_verify(key_file.as_deref(), partial, json, &files),
    }
}

fn audit_verify(
    key_file: Option<&std::path::Path>,
    partial: bool,
    json: bool,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let key = key_file
        .map(mcpgate::config::read_key_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let report = match mcpgate::audit::verify::verify(files, key.as_ref(), partial) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: cannot read the audit files: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(if report.intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn policy(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    use mcpgate::cli::{live_snapshot, policy};
    match command {
        PolicyCommand::Check { config, offline } => {
            let cfg = Config::load(&config)?;
            let (set, _) = policy::load(&cfg)?;
            let snapshot = if offline {
                None
            } else {
                Some(live_snapshot(&cfg).await?)
            };
            let (report, warned) = policy::check(&set, snapshot.as_deref());
            print!("{report}");
            Ok(if warned {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        PolicyCommand::Explain {
            config,
            claims,
            target,
            kind,
            api_key,
            mtls,
            offline,
            json,
        } => {
            let cfg = Config::load(&config)?;
            let (set, mode) = policy::load(&cfg)?;
            let principal = policy::principal(&cfg, &claims, api_key, mtls)?;
            let snapshot = if offline {
                None
            } else {
                Some(live_snapshot(&cfg).await?)
            };
            let explanation = policy::explain(
                &cfg,
                &set,
                mode,
                &principal,
                &kind,
                &target,
                snapshot.as_deref(),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&explanation)?);
            } else {
                println!("{explanation}");
            }
            Ok(if explanation.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        PolicyCommand::Diff {
            config,
            old,
            new,
            claims,
            json,
        } => {
            let cfg = Config::load(&config)?;
            let (old, new) = (policy::load_dir(&old, &cfg)?, policy::load_dir(&new, &cfg)?);
            let principal = policy::principal(&cfg, &claims, None, None)?;
            let snapshot = live_snapshot(&cfg).await?;
            let diff = mcpgate::policy::explain::diff(&old, &new, &principal, &snapshot);
            if json {
                println!("{}", serde_json::to_string_pretty(&diff)?);
            } else {
                println!("{diff}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn catalogue(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let snapshot = mcpgate::cli::live_snapshot(cfg).await?;
    let mut rows = Vec::new();
    for kind in ListKind::ALL {
        for e in snapshot.entries(kind) {
            rows.push(serde_json::json!({
                "kind": kind.result_member(), "name": e.key, "upstream": e.upstream.as_str(),
                "upstream_name": e.original, "alias": e.aliased,
            }));
        }
    }
    let down: Vec<_> = snapshot
        .upstreams
        .iter()
        .filter(|(_, l)| !l.up)
        .map(|(id, l)| serde_json::json!({"upstream": id.as_str(), "error": l.last_error}))
        .collect();
    let conflicts: Vec<_> = snapshot
        .conflicts
        .iter()
        .map(|(k, name, owners)| serde_json::json!({"kind": k.result_member(), "name": name, "upstreams": owners}))
        .collect();
    if json {
        let doc = serde_json::json!({"entries": rows, "down": down, "conflicts": conflicts});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{:<18} {:<48} {:<14} UPSTREAM NAME",
            "KIND", "NAME", "UPSTREAM"
        );
        for r in &rows {
            let alias = if r["alias"] == true { "  (alias)" } else { "" };
            println!(
                "{:<18} {:<48} {:<14} {}{alias}",
                r["kind"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default(),
                r["upstream"].as_str().unwrap_or_default(),
                r["upstream_name"].as_str().unwrap_or_default()
            );
        }
        for d in &down {
            println!(
                "DOWN {}: {}",
                d["upstream"].as_str().unwrap_or_default(),
                d["error"].as_str().unwrap_or_default()
            );
        }
        for c in &conflicts {
            println!(
                "CONFLICT {} {} offered by {}",
                c["kind"].as_str().unwrap_or_default(),
                c["name"].as_str().unwrap_or_default(),
                c["upstreams"]
            );
        }
    }
    Ok(if down.is_empty() && conflicts.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// SIGTERM and SIGINT (Ctrl-C): each received signal is one `recv`.
/// Installs the SIGHUP handler now (from here on SIGHUP no longer ends the process) and returns
/// what connects it to the gateway: each SIGHUP then requests a configuration reload.
fn reload_on_hangup() -> std::io::Result<impl FnOnce(mcpgate::app::Reloader)> {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(move |reloader: mcpgate::app::Reloader| {
        #[cfg(unix)]
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                reloader.request();
            }
        });
        #[cfg(not(unix))]
        drop(reloader);
    })
}

struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers (from here on the signals no longer end the process by
    /// themselves).
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next signal.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
