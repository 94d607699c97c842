//! The load benchmark (issue 12, DESIGN.md §7): one command measures mcpgate against a direct
//! call to the same upstream and against nginx as a plain reverse-proxy hop in front of it,
//! for both eras and for a minimal and a full configuration, and prints a table with the
//! ratios (also written as JSON to `target/bench/loadbench.json`).
//!
//! Measured per era and target: `tools/call` latency at concurrency 1 (p50, p99) and the
//! latency added over direct; throughput at concurrency 32; CPU time per call of the hop
//! (user + system of its processes over the concurrency-32 run, divided by the calls);
//! `tools/list` from cache over 10 upstreams × 100 tools (p50); resident memory with 10,000
//! open legacy sessions. `--quick` runs every configuration briefly and checks only that it
//! answers correctly under load (no error, every call counted, nothing left in flight): it
//! runs in the test command, never as a timed test.
//!
//! Run it with `scripts/bench.sh` (which installs nginx and oha and builds in release mode).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

mod configs;
mod load;
mod procs;
mod report;
mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use configs::{Issuer, Setup};
use load::Amount;
use report::{Report, Row};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Brief runs that check correctness under load only (for the test command).
    #[arg(long)]
    quick: bool,
    /// The mcpgate binary measured.
    #[arg(long, default_value = "target/release/mcpgate")]
    gateway: PathBuf,
    /// The oha binary (default: .bench/bin/oha, else oha on PATH).
    #[arg(long)]
    oha: Option<PathBuf>,
    /// The nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Worker threads of both hops: nginx's `worker_processes` and mcpgate's
    /// `TOKIO_WORKER_THREADS` (default: one per core, both).
    #[arg(long)]
    threads: Option<usize>,
    /// Eras measured.
    #[arg(long, value_delimiter = ',', default_value = "legacy,modern")]
    eras: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// The benchmark's upstream MCP server (started by the benchmark itself).
    Upstream {
        #[arg(long)]
        era: String,
        #[arg(long, default_value_t = 100)]
        tools: usize,
        /// A JWKS document served at /jwks.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
}

/// How long and how much, full run or quick.
struct Plan {
    c1_requests: u64,
    c32: Duration,
    list_requests: u64,
    sessions: usize,
}

fn main() {
    let cli = Cli::parse();
    if let Some(Command::Upstream { era, tools, jwks }) = cli.command {
        let era = upstream::Era::parse(&era).expect("legacy or modern");
        let jwks = jwks.map(|p| std::fs::read_to_string(p).expect("JWKS file"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let addr = upstream::serve(era, tools, jwks).await.expect("bind");
            println!("listening on {addr}");
            std::future::pending::<()>().await;
        });
        return;
    }
    let plan = if cli.quick {
        Plan {
            c1_requests: 200,
            c32: Duration::from_secs(1),
            list_requests: 50,
            sessions: 200,
        }
    } else {
        Plan {
            c1_requests: 5000,
            c32: Duration::from_secs(8),
            list_requests: 2000,
            sessions: 10_000,
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let report = runtime.block_on(run(&cli, &plan));
    report.print();
    std::fs::create_dir_all(&cli.out).expect("output directory");
    let file = cli.out.join(if cli.quick {
        "loadbench-quick.json"
    } else {
        "loadbench.json"
    });
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&report.json()).expect("JSON"),
    )
    .expect("report written");
    println!("\nwritten to {}", file.display());
    if !report.failures.is_empty() {
        eprintln!("FAILED:\n  {}", report.failures.join("\n  "));
        std::process::exit(1);
    }
}

async fn run(cli: &Cli, plan: &Plan) -> Report {
    let oha = cli.oha.clone().unwrap_or_else(|| procs::tool("oha"));
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::new();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &issuer.jwks).expect("JWKS written");
    let token = issuer.token();
    let http = reqwest::Client::new();
    let mut report = Report::new(cli.quick, cli.threads);
    for era in &cli.eras {
        let (_upstream, addr) = procs::upstream(era, 100, Some(&jwks));
        let direct_url = format!("http://{addr}/mcp");
        let (nginx, nginx_url) = procs::nginx(&cli.nginx, dir.path(), &addr, cli.threads);
        // The baselines: the upstream itself, and nginx in front of it.
        for (target, url, proc) in [
            ("direct", &direct_url, None),
            ("nginx", &nginx_url, Some(&nginx)),
        ] {
            let session = legacy_session(&http, era, url, None, &mut report).await;
            let call = load::call(era, url, "echo", session.as_deref(), None);
            let row = measure(&oha, plan, &http, &call, proc, era, target, &mut report).await;
            report.rows.push(row);
        }
        let list = load::list(
            era,
            &direct_url,
            legacy_session(&http, era, &direct_url, None, &mut report)
                .await
                .as_deref(),
            None,
        );
        let direct_list = load::oha(&oha, &list, 1, Amount::Requests(plan.list_requests));
        report.check(&format!("{era} direct tools/list"), &direct_list);
        report.list_direct.push((era.clone(), direct_list));
        for setup in [Setup::Minimal, Setup::Full] {
            let token = (setup == Setup::Full).then_some(token.as_str());
            let sub = dir.path().join(format!("{era}-{}", setup.as_str()));
            std::fs::create_dir_all(&sub).expect("dir");
            // tools/call through one upstream.
            let yaml = configs::gateway_yaml(setup, &sub, &addr, era, &["bench".into()], 100);
            let (gw, url, admin) = procs::gateway(&cli.gateway, &sub, "call", &yaml, cli.threads);
            let session = legacy_session(&http, era, &url, token, &mut report).await;
            let call = load::call(era, &url, &setup.echo("bench"), session.as_deref(), token);
            let target = format!("mcpgate {}", setup.as_str());
            let row = measure(
                &oha,
                plan,
                &http,
                &call,
                Some(&gw),
                era,
                &target,
                &mut report,
            )
            .await;
            check_after_load(&http, &admin, &row, setup, &mut report, era).await;
            report.rows.push(row);
            drop(gw);
            // tools/list from cache over 10 upstreams × 100 tools (and echo).
            let ids: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
            let yaml = configs::gateway_yaml(setup, &sub, &addr, era, &ids, 2000);
            let (gw, url, _admin) = procs::gateway(&cli.gateway, &sub, "list", &yaml, cli.threads);
            let session = legacy_session(&http, era, &url, token, &mut report).await;
            let list = load::list(era, &url, session.as_deref(), token);
            match load::listed(&http, &list).await {
                Ok(n) if n >= 900 => {}
                other => report.fail(format!("{era} {target} tools/list listed {other:?}")),
            }
            let measured = load::oha(&oha, &list, 1, Amount::Requests(plan.list_requests));
            report.check(&format!("{era} {target} tools/list"), &measured);
            report.lists.push((era.clone(), setup.as_str(), measured));
            drop(gw);
            // Resident memory with many open legacy sessions.
            if era == "legacy" {
                let yaml = configs::gateway_yaml(setup, &sub, &addr, era, &["bench".into()], 100);
                let (gw, url, _admin) =
                    procs::gateway(&cli.gateway, &sub, "sessions", &yaml, cli.threads);
                let before = gw.rss_bytes();
                if let Err(e) =
                    load::sessions(&url, &setup.echo("bench"), token, plan.sessions).await
                {
                    report.fail(format!("{target}: opening {} sessions: {e}", plan.sessions));
                }
                report
                    .sessions
                    .push((setup.as_str(), plan.sessions, before, gw.rss_bytes()));
                drop(gw);
            }
        }
        drop(nginx);
    }
    report
}

/// A legacy session at `url` for a legacy run (`None` for modern).
async fn legacy_session(
    http: &reqwest::Client,
    era: &str,
    url: &str,
    token: Option<&str>,
    report: &mut Report,
) -> Option<String> {
    if era != "legacy" {
        return None;
    }
    match load::open_session(http, url, token).await {
        Ok(session) => Some(session),
        Err(e) => {
            report.fail(format!("{url}: {e}"));
            None
        }
    }
}

/// Probe, latency at concurrency 1, then throughput and CPU at concurrency 32.
#[allow(clippy::too_many_arguments)]
async fn measure(
    oha: &std::path::Path,
    plan: &Plan,
    http: &reqwest::Client,
    call: &load::Request,
    proc: Option<&procs::Proc>,
    era: &str,
    target: &str,
    report: &mut Report,
) -> Row {
    if let Err(e) = load::probe(http, call).await {
        report.fail(format!("{era} {target}: {e}"));
    }
    let c1 = load::oha(oha, call, 1, Amount::Requests(plan.c1_requests));
    report.check(&format!("{era} {target} c1"), &c1);
    let cpu_before = proc.map(procs::Proc::cpu_seconds);
    let c32 = load::oha(oha, call, 32, Amount::For(plan.c32));
    let cpu = proc
        .zip(cpu_before)
        .map(|(p, before)| p.cpu_seconds() - before);
    report.check(&format!("{era} {target} c32"), &c32);
    Row {
        era: era.to_string(),
        target: target.to_string(),
        cpu_us_per_call: cpu.map(|s| s * 1e6 / c32.ok.max(1) as f64),
        c1,
        c32,
    }
}

/// After the load: every call the load generator saw answered was counted `ok` by the
/// gateway (one more for the probe), nothing is in flight, and (full) every call was audited.
async fn check_after_load(
    http: &reqwest::Client,
    admin: &str,
    row: &Row,
    setup: Setup,
    report: &mut Report,
    era: &str,
) {
    let calls = 1 + row.c1.ok + row.c32.ok;
    let upstream = "bench";
    let mut text = String::new();
    for _ in 0..100 {
        text = match http.get(format!("{admin}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => {
                report.fail(format!("{admin}/metrics: {e}"));
                return;
            }
        };
        let audited = load::sample(&text, "mcpgate_audit_records_total");
        if setup == Setup::Minimal || audited >= (calls + 2) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = load::sample(
        &text,
        &format!(
            "mcpgate_requests_total{{method=\"tools/call\",outcome=\"ok\",upstream=\"{upstream}\"}}"
        ),
    );
    let target = &row.target;
    if ok != calls as f64 {
        report.fail(format!(
            "{era} {target}: {ok} calls counted ok, {calls} answered"
        ));
    }
    let inflight = load::sample(
        &text,
        &format!("mcpgate_upstream_inflight{{upstream=\"{upstream}\"}}"),
    );
    if inflight != 0.0 {
        report.fail(format!(
            "{era} {target}: {inflight} calls still in flight after the load"
        ));
    }
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with("mcpgate_requests_total{method=\"tools/call\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    if counted != calls as f64 {
        report.fail(format!(
            "{era} {target}: {counted} calls counted in all, {calls} made"
        ));
    }
    if setup == Setup::Full {
        let audited = load::sample(&text, "mcpgate_audit_records_total");
        // config_loaded and policy_loaded, then one record per call.
        if audited != (calls + 2) as f64 {
            report.fail(format!(
                "{era} {target}: {audited} audit records for {calls} calls"
            ));
        }
    }
}
