//! The `mcpgate` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mcpgate::catalogue::ListKind;
use mcpgate::config::Config;

/// mcpgate: one MCP endpoint in front of many MCP servers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: `text` or `json`.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    mcpgate::telemetry::init_logging(cli.log_format == "json");
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
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { config } => {
            let cfg = Config::load(&config)?;
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
            let running = mcpgate::app::start(cfg).await.context("cannot start")?;
            println!("mcpgate listening on {}", running.mcp_url);
            if let Some(admin) = running.admin_addr {
                println!("mcpgate operations on http://{admin}/metrics");
            }
            shutdown_signal().await;
            tracing::info!("shutting down");
            running.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalogue { config, json } => catalogue(&Config::load(&config)?, json).await,
    }
}

async fn catalogue(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let upstreams = std::sync::Arc::new(mcpgate::upstream::UpstreamSet::new(
        &cfg.upstreams,
        cfg.session.idle_timeout,
    )?);
    let catalogue = mcpgate::catalogue::Catalogue::new(
        upstreams,
        &cfg.namespacing,
        cfg.catalogue.clone(),
        mcpgate::telemetry::Metrics::new(),
    );
    catalogue.refresh_all().await;
    let snapshot = catalogue.snapshot();
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
