//! Build script: records the git revision the binary was built from, for `mcpgate --version`
//! and the `mcpgate_build_info` metric. `MCPGATE_GIT_REVISION` from the environment wins (an
//! image build has no `.git`: the Dockerfile passes it as a build argument); otherwise `git`
//! is asked; otherwise it is `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MCPGATE_GIT_REVISION");
    // HEAD names a branch whose ref moves on commit: both are watched, where they exist (a
    // watched path that does not exist would rerun this script, and rebuild, every time).
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let revision = std::env::var("MCPGATE_GIT_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".into());
    let revision: String = revision
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(40)
        .collect();
    println!("cargo:rustc-env=MCPGATE_GIT_REVISION={revision}");
}

fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
}
