//! The benchmark's table, its JSON, the budget of DESIGN.md §7 checked against it (reported,
//! never asserted), and the correctness failures that make `--quick` fail.

use serde_json::{Value, json};

use crate::load::Measured;

/// One target's `tools/call` measurements in one era.
pub struct Row {
    pub era: String,
    pub target: String,
    pub c1: Measured,
    pub c32: Measured,
    /// CPU of the hop per call at concurrency 32, microseconds (`None` for direct).
    pub cpu_us_per_call: Option<f64>,
}

pub struct Report {
    pub quick: bool,
    /// Worker threads of both hops, when set.
    pub threads: Option<usize>,
    pub rows: Vec<Row>,
    /// Direct `tools/list` of one upstream (100 tools), per era.
    pub list_direct: Vec<(String, Measured)>,
    /// `tools/list` over 10 upstreams × 100 tools: era, configuration, measurement.
    pub lists: Vec<(String, &'static str, Measured)>,
    /// Configuration, sessions, RSS before, RSS after (bytes).
    pub sessions: Vec<(&'static str, usize, u64, u64)>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn new(quick: bool, threads: Option<usize>) -> Self {
        Self {
            quick,
            threads,
            rows: Vec::new(),
            list_direct: Vec::new(),
            lists: Vec::new(),
            sessions: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub fn fail(&mut self, why: String) {
        self.failures.push(why);
    }

    /// Records a failure when the load saw an error or a status other than 200.
    pub fn check(&mut self, what: &str, m: &Measured) {
        if m.errors > 0 || m.ok == 0 || m.ok != m.requests {
            self.fail(format!(
                "{what}: {} of {} answered 200, {} errors",
                m.ok, m.requests, m.errors
            ));
        }
    }

    fn row(&self, era: &str, target: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.era == era && r.target == target)
    }

    /// (added p50 µs, ratio of added p50 to nginx's, CPU ratio to nginx, rps ratio to nginx,
    /// rps ratio to direct) of `row`.
    fn ratios(&self, row: &Row) -> Value {
        let direct = self.row(&row.era, "direct");
        let nginx = self.row(&row.era, "nginx");
        let added = direct.map(|d| row.c1.p50_us - d.c1.p50_us);
        let nginx_added = direct.zip(nginx).map(|(d, n)| n.c1.p50_us - d.c1.p50_us);
        json!({
            "added_p50_us": added,
            "added_p50_vs_nginx": added.zip(nginx_added).map(|(a, n)| a / n),
            "cpu_vs_nginx": row.cpu_us_per_call.zip(nginx.and_then(|n| n.cpu_us_per_call)).map(|(a, n)| a / n),
            "rps_vs_nginx": nginx.map(|n| row.c32.rps / n.c32.rps),
            "rps_vs_direct": direct.map(|d| row.c32.rps / d.c32.rps),
        })
    }

    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({"era": r.era, "target": r.target, "c1": r.c1, "c32": r.c32,
                    "cpu_us_per_call": r.cpu_us_per_call, "ratios": self.ratios(r)})
            })
            .collect();
        json!({
            "quick": self.quick,
            "threads": self.threads,
            "machine": machine(),
            "tools_call": rows,
            "tools_list_direct_100": self.list_direct.iter().map(|(e, m)| json!({"era": e, "measured": m})).collect::<Vec<_>>(),
            "tools_list_10x100": self.lists.iter().map(|(e, s, m)| json!({"era": e, "config": s, "measured": m})).collect::<Vec<_>>(),
            "legacy_sessions": self.sessions.iter().map(|(s, n, before, after)| json!({"config": s, "sessions": n, "rss_before_bytes": before, "rss_after_bytes": after})).collect::<Vec<_>>(),
            "failures": self.failures,
        })
    }

    pub fn print(&self) {
        let m = machine();
        println!(
            "\nloadbench{} — {} cores, worker threads of each hop: {}, {}, {}",
            if self.quick {
                " --quick (correctness only; numbers are not measurements)"
            } else {
                ""
            },
            m["cores"],
            self.threads
                .map_or("one per core".to_string(), |n| n.to_string()),
            m["kernel"].as_str().unwrap_or("?"),
            m["date"].as_str().unwrap_or("?")
        );
        println!(
            "\ntools/call            c=1 p50   c=1 p99  added p50   c=32 rps   CPU/call | added vs nginx  CPU vs nginx  rps vs nginx  rps vs direct"
        );
        for r in &self.rows {
            let x = self.ratios(r);
            let f = |v: &Value, unit: &str| {
                v.as_f64()
                    .map_or("-".to_string(), |v| format!("{v:.2}{unit}"))
            };
            println!(
                "{:<7} {:<16} {:>6.0} µs {:>6.0} µs {:>8} {:>10.0} {:>10} | {:>14} {:>13} {:>13} {:>14}",
                r.era,
                r.target,
                r.c1.p50_us,
                r.c1.p99_us,
                x["added_p50_us"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.0} µs")),
                r.c32.rps,
                r.cpu_us_per_call
                    .map_or("-".into(), |v| format!("{v:.1} µs")),
                f(&x["added_p50_vs_nginx"], "×"),
                f(&x["cpu_vs_nginx"], "×"),
                f(&x["rps_vs_nginx"], "×"),
                f(&x["rps_vs_direct"], "×"),
            );
        }
        println!(
            "\ntools/list p50: direct, one upstream of 100 tools | mcpgate, 10 upstreams × 100 tools"
        );
        for (era, direct) in &self.list_direct {
            let through: Vec<String> = self
                .lists
                .iter()
                .filter(|(e, _, _)| e == era)
                .map(|(_, s, m)| format!("{s} {:.0} µs", m.p50_us))
                .collect();
            println!(
                "{era:<7} direct {:.0} µs | {}",
                direct.p50_us,
                through.join(", ")
            );
        }
        for (setup, n, before, after) in &self.sessions {
            println!(
                "legacy sessions, {setup}: {n} open → RSS {:.1} MB (from {:.1} MB)",
                *after as f64 / 1e6,
                *before as f64 / 1e6
            );
        }
        if !self.quick {
            self.print_budget();
        }
    }

    /// DESIGN.md §7, for the full configuration.
    fn print_budget(&self) {
        println!("\nbudget (DESIGN.md §7), full configuration:");
        for era in ["legacy", "modern"] {
            let Some(full) = self.row(era, "mcpgate full") else {
                continue;
            };
            let x = self.ratios(full);
            let line = |what: &str, value: Option<f64>, ok: bool| {
                let v = value.map_or("-".into(), |v| format!("{v:.2}"));
                println!(
                    "  {era:<7} {what:<44} {v:>10}  {}",
                    if ok { "meets" } else { "MISSES" }
                );
            };
            let added = x["added_p50_us"].as_f64();
            line("added p50 ≤ 50 µs", added, added.is_some_and(|a| a <= 50.0));
            let vs = x["added_p50_vs_nginx"].as_f64();
            line("added p50 ≤ 1.5× nginx's", vs, vs.is_some_and(|a| a <= 1.5));
            let cpu = x["cpu_vs_nginx"].as_f64();
            line(
                "CPU per call ≤ 2× nginx's",
                cpu,
                cpu.is_some_and(|a| a <= 2.0),
            );
            let rps = x["rps_vs_nginx"].as_f64();
            line(
                "throughput at c=32 ≥ 0.6× nginx's",
                rps,
                rps.is_some_and(|a| a >= 0.6),
            );
            if let Some((_, _, m)) = self.lists.iter().find(|(e, s, _)| e == era && *s == "full") {
                line(
                    "tools/list 10×100 p50 ≤ 300 µs",
                    Some(m.p50_us),
                    m.p50_us <= 300.0,
                );
            }
        }
        if let Some((_, n, _, after)) = self.sessions.iter().find(|(s, ..)| *s == "full") {
            let mb = *after as f64 / 1e6;
            println!(
                "  legacy  {n} sessions ≤ 100 MB RSS {:>24.1}  {}",
                mb,
                if mb <= 100.0 { "meets" } else { "MISSES" }
            );
        }
    }
}

fn machine() -> Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": format!("Linux {}", kernel.trim()),
        "date": date,
    })
}
