//! The gateway as a separate process (the `mcpgate` binary), for tests that measure it from
//! outside: its resident memory under load, its open connections.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Reads the start-up lines of `mcpgate serve` from `output` (stdout, or stderr when the audit
/// log is on stdout): the MCP endpoint's URL and the operations listener's base URL. Keeps
/// reading `output` afterwards so the gateway never blocks on it.
pub fn where_it_listens(output: impl std::io::Read + Send + 'static) -> (String, String) {
    let mut lines = BufReader::new(output).lines();
    let mut url = None;
    let mut admin = None;
    while url.is_none() || admin.is_none() {
        let line = lines
            .next()
            .expect("mcpgate prints where it listens")
            .unwrap();
        if let Some(u) = line.strip_prefix("mcpgate listening on ") {
            url = Some(u.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("mcpgate operations on ") {
            admin = Some(a.trim().trim_end_matches("/metrics").to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (url.unwrap(), admin.unwrap())
}

/// A running `mcpgate serve`; killed when dropped.
pub struct Spawned {
    child: Child,
    /// `http://127.0.0.1:{port}/mcp`.
    pub url: String,
    /// `http://127.0.0.1:{port}` of the operations listener.
    pub admin: String,
    _dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts `mcpgate serve` with `yaml` (which must configure `admin`); waits until it
    /// listens.
    pub fn start(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mcpgate.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcpgate"))
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mcpgate starts");
        let (url, admin) = where_it_listens(child.stdout.take().unwrap());
        Self {
            child,
            url,
            admin,
            _dir: dir,
        }
    }

    /// Resident memory of the process now, KiB (`VmRSS` of `/proc/{pid}/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// The value of one metric sample (`name{labels}`), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        super::sample(&text, sample)
    }

    /// The MCP endpoint's `host:port`.
    pub fn authority(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .to_string()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
