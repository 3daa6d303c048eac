//! The built `argus-agent` and `argus-detector`, started on free ports, and
//! the metric names their `/metrics` expose.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// `target/<profile>/<name>`, checked to be newer than every source file it
/// is built from (`crates`: workspace-relative crate directories).
pub fn binary(name: &str, crates: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps");
    let bin = dir.join(name);
    let rebuild = format!(
        "build it: cargo build -p {name} (scripts/test.sh builds it as part of cargo test --workspace)"
    );
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} does not exist; {rebuild}", bin.display()));
    let root = crate::root();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for c in crates {
        newest_file(&root.join(c).join("src"), &mut newest);
        newest_file(&root.join(c).join("Cargo.toml"), &mut newest);
    }
    if let Some((t, path)) = newest
        && t > built
    {
        panic!(
            "{} is older than {} — it would test stale code; {rebuild}",
            bin.display(),
            path.display()
        );
    }
    bin
}

fn newest_file(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest_file(&e.path(), newest);
        }
    } else if let Ok(t) = meta.modified()
        && newest.as_ref().is_none_or(|(n, _)| t > *n)
    {
        *newest = Some((t, path.to_path_buf()));
    }
}

/// A running binary; killed on drop.
pub struct Running {
    child: Child,
    pub ops: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    /// Starts `bin run --config <config>` and waits for its ops server's
    /// "ops server listening" log line (the address it bound).
    pub fn start(bin: &Path, config: &Path) -> Running {
        let mut child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let addr = regex::Regex::new(r"(127\.0\.0\.1:\d+)").unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [
            Box::new(stdout) as Box<dyn Read + Send>,
            Box::new(stderr) as Box<dyn Read + Send>,
        ] {
            let (tx, log, addr) = (tx.clone(), log.clone(), addr.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("ops server listening")
                        && let Some(m) = addr.captures(&line)
                    {
                        let _ = tx.send(m[1].parse().unwrap());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(ops) => Running { child, ops, log },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{} did not start its ops server (exit {status:?}); log:\n{}",
                    bin.display(),
                    log.lock().unwrap().join("\n")
                );
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `GET path` on the ops server: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.ops, path)
    }

    /// Polls `/metrics` until `ready(body)` or `within` passes; the last body.
    pub fn metrics_when(&self, within: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.get("/metrics");
            assert_eq!(status, 200, "/metrics: {body}");
            if ready(&body) || Instant::now() > deadline {
                return body;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET (the ops server speaks plain HTTP).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_accept(addr, path, "*/*")
}

/// [`http_get`] with an `Accept` header (`application/openmetrics-text`
/// gets exemplars).
pub fn http_get_accept(addr: SocketAddr, path: &str, accept: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The sample names a Prometheus text (0.0.4) exposition makes queryable:
/// every sample line's name, and for each `# TYPE` the names its samples
/// take (`_bucket`/`_sum`/`_count` for histograms, `_sum`/`_count` for
/// summaries), so a family declared but still without a sample counts.
pub fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            names.insert(name.to_string());
            let suffixes: &[&str] = match kind {
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count"],
                _ => &[],
            };
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_types_and_samples() {
        let text = "# TYPE a_total counter\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\n# TYPE g gauge\ng{x=\"y\"} 1\nplain 2\n";
        let n = exposed_names(text);
        for want in ["a_total", "h_bucket", "h_sum", "h_count", "g", "plain"] {
            assert!(n.contains(want), "{want}: {n:?}");
        }
        assert!(!n.contains("a"));
    }
}
