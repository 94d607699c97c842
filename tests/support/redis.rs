//! A real Redis (`redis-server` from Debian, installed by scripts/setup-e2e.sh) on a free
//! loopback port, for the shared rate-limit store. Nothing is persisted; killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running redis-server.
pub struct Redis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Extra arguments.
    args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis Sentinel (`redis-server --sentinel`) monitoring `master` as `mymaster`, with a
/// quorum of one and a 1 s down-after, so that it fails over quickly. Killed when dropped.
#[allow(dead_code)]
pub struct Sentinel {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl Sentinel {
    pub fn start(master: &Redis) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\nport {port}\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 3000\n",
                dir.path().display(),
                master.port
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs in sentinel mode");
        // Killed when dropped, also when it never listens.
        let sentinel = Self {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..500 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return sentinel;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis sentinel did not listen on {port}");
    }

    /// The master's port as the Sentinel names it now.
    pub fn master_port(&self) -> u16 {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Asks the Sentinel to fail over now (the master becomes a replica of the new one),
    /// waiting up to 20 s for it to know a replica to promote.
    pub fn failover(&self) {
        let mut answer = String::new();
        for _ in 0..200 {
            let out = Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(["SENTINEL", "FAILOVER", "mymaster"])
                .output()
                .expect("redis-cli runs");
            answer = String::from_utf8_lossy(&out.stdout).into_owned();
            if answer.contains("OK") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the Sentinel would not fail over: {answer}");
    }

    /// Waits up to 30 s for the Sentinel to name the master on `port`.
    pub async fn wait_for_master(&self, port: u16) {
        for _ in 0..300 {
            if self.master_port() == port {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the Sentinel still names {} as master", self.master_port());
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    /// Starts redis-server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            args: Vec::new(),
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a server that replicates `master`.
    #[allow(dead_code)]
    pub fn replica_of(master: &Redis) -> Self {
        let mut replica = Self {
            child: None,
            port: free_port(),
            args: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
        };
        replica.restart();
        replica
    }

    /// `master` or `slave`, as the server says (`ROLE`).
    #[allow(dead_code)]
    pub fn role(&self) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "ROLE"])
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(&self.args)
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/setup-e2e.sh installs the Debian package)");
        self.child = Some(child);
        // Up to 10 s, in 20 ms steps.
        for _ in 0..500 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not listen on {}", self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
