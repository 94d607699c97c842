//! The processes a run starts — the benchmark upstream, mcpgate, nginx — and what is read off
//! them: CPU time (user + system, from `/proc/{pid}/stat`, summed over a process and its
//! children) and resident memory.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process, killed (and its children with it) when dropped.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        // nginx's master takes its workers with it on SIGTERM; the others are single processes.
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) of this process and its direct children so far.
    pub fn cpu_seconds(&self) -> f64 {
        let mut pids = vec![self.pid()];
        pids.extend(children(self.pid()));
        pids.iter().map(|p| cpu_of(*p)).sum()
    }

    /// Resident memory, bytes, of this process and its direct children.
    pub fn rss_bytes(&self) -> u64 {
        let mut pids = vec![self.pid()];
        pids.extend(children(self.pid()));
        pids.iter().map(|p| rss_of(*p)).sum()
    }
}

fn ticks_per_second() -> f64 {
    // CLK_TCK is 100 on Linux for every architecture this runs on (USER_HZ).
    100.0
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn cpu_of(pid: u32) -> f64 {
    // After the command: state(0) ppid(1) … utime(11) stime(12).
    stat_fields(pid).map_or(0.0, |f| {
        let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
        ticks / ticks_per_second()
    })
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_fields(*pid).is_some_and(|f| f[1] == parent.to_string()))
        .collect()
}

/// Starts this program's `upstream` subcommand; returns it and its address.
pub fn upstream(era: &str, tools: usize, jwks: Option<&Path>) -> (Proc, String) {
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    command.args(["upstream", "--era", era, "--tools", &tools.to_string()]);
    if let Some(jwks) = jwks {
        command.arg("--jwks").arg(jwks);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the benchmark upstream starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the upstream says where it listens")
            .expect("UTF-8");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.trim().to_string();
        }
    };
    (Proc { child }, addr)
}

/// `mcpgate serve` with `yaml` written into `dir`; returns it, its MCP URL and its admin URL.
pub fn gateway(
    binary: &Path,
    dir: &Path,
    name: &str,
    yaml: &str,
    threads: Option<usize>,
) -> (Proc, String, String) {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml).expect("config written");
    let mut command = Command::new(binary);
    if let Some(n) = threads {
        command.env("TOKIO_WORKER_THREADS", n.to_string());
    }
    let mut child = command
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file"),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut url, mut admin) = (None, None);
    while url.is_none() || admin.is_none() {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => panic!(
                "mcpgate ({name}) exited before listening; see {}",
                dir.join(format!("{name}.log")).display()
            ),
        };
        if let Some(u) = line.strip_prefix("mcpgate listening on ") {
            url = Some(u.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("mcpgate operations on ") {
            admin = Some(a.trim().trim_end_matches("/metrics").to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Proc { child }, url.unwrap(), admin.unwrap())
}

/// nginx as a plain reverse-proxy hop to `upstream` (keep-alive upstream connections, no
/// access log, no buffering), as many workers as cores; returns it and its `/mcp` URL.
pub fn nginx(binary: &Path, dir: &Path, upstream: &str, workers: Option<usize>) -> (Proc, String) {
    let workers = workers.map_or("auto".to_string(), |n| n.to_string());
    let port = free_port();
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).expect("nginx dir");
    let conf = format!(
        "daemon off;
worker_processes {workers};
pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {p}/body;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  upstream mcp {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://mcp;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_buffering off;
    }}
  }}
}}
",
        p = prefix.display()
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let child = Command::new(binary)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(&prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
    // Killed (and waited for) when dropped, on every path.
    let nginx = Proc { child };
    let url = format!("http://127.0.0.1:{port}/mcp");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (nginx, url);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(nginx);
    panic!(
        "nginx did not listen on {port}; see {}",
        prefix.join("logs/error.log").display()
    );
}

fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    socket.local_addr().expect("address").port()
}

/// The default location of a tool installed by `scripts/setup-bench.sh`, else its name.
pub fn tool(name: &str) -> PathBuf {
    let local = Path::new(".bench/bin").join(name);
    if local.exists() {
        local
    } else {
        PathBuf::from(name)
    }
}
