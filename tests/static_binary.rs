//! The shipped binary (`make release`: static musl) in an otherwise empty
//! root, as in the `FROM scratch` image: no shell, no libc, no /proc, no
//! /dev. Run as uid/gid 65534 with `chroot --userspec`, against PostgreSQL
//! by IP: `migrate up`, serve, create and fetch a user, scrape metrics,
//! SIGTERM, exit 0. Twice: in a root holding only the binary, `/etc/hosts`
//! and the CA bundle, and in the root `scripts/image-root.sh` assembles for
//! the image (`make image-root`; `USERSVC_IMAGE_ROOT` names it, else the
//! test runs `scripts/image-root.sh` itself).
//!
//! Needs the release binary: `USERSVC_RELEASE_BIN`, else
//! `<target>/x86_64-unknown-linux-musl/dist/usersvc`. `make test-static`
//! builds it and runs this file (CI does); without the binary the tests say
//! so and pass without running. They need root (chroot).

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::client;
use support::TestDb;

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The static binary, or `None` (with a message) when it was not built.
fn release_binary() -> Option<PathBuf> {
    let path = match std::env::var_os("USERSVC_RELEASE_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            // CARGO_BIN_EXE_usersvc is <target>/debug/usersvc.
            let target = Path::new(env!("CARGO_BIN_EXE_usersvc"))
                .parent()
                .and_then(Path::parent)
                .expect("target dir");
            target.join("x86_64-unknown-linux-musl/dist/usersvc")
        }
    };
    if path.is_file() {
        return Some(path);
    }
    eprintln!(
        "SKIPPED: no release binary at {} — `make test-static` builds it and runs these tests",
        path.display()
    );
    None
}

fn temp_root(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("usersvc-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp root");
    dir
}

/// The environment's PostgreSQL, by IP: the root has no resolver config.
fn db_url_by_ip(db: &TestDb) -> String {
    let url = db.url().replace("@localhost:", "@127.0.0.1:");
    assert!(
        url.contains("@127.0.0.1:"),
        "test database not on 127.0.0.1: {url}"
    );
    url
}

/// `chroot --userspec=65534:65534 ROOT BIN args...` with exactly `env`.
fn in_root(root: &Path, bin: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    // By path: the child's environment is cleared, PATH included.
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chroot (coreutils)");
    let mut cmd = Command::new(chroot);
    cmd.arg("--userspec=65534:65534")
        .arg(root)
        .arg(bin)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chroot");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = Arc::clone(&lines);
            thread::spawn(move || {
                for l in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("lock").push(l);
                }
            });
        }
        Running { child, lines }
    }

    fn output(&self) -> String {
        self.lines.lock().expect("lock").join("\n")
    }

    /// The first JSON log line with this `msg`, within `timeout`.
    fn wait_for(&mut self, msg: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .lines
                .lock()
                .expect("lock")
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["msg"] == msg);
            if let Some(v) = found {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited with {status} before {msg:?}:\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "no {msg:?} within {timeout:?}:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("did not exit within {timeout:?}:\n{}", self.output());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// migrate up, serve, create + fetch a user, scrape metrics, SIGTERM, exit 0.
fn serve_in_root(root: &Path, bin: &str) {
    let db = TestDb::new();
    let url = db_url_by_ip(&db);

    let version = in_root(root, bin, &["--version"], &[])
        .output()
        .expect("chroot --version");
    assert!(
        version.status.success(),
        "--version in the root: {version:?}"
    );
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("usersvc "));

    let migrate = in_root(root, bin, &["migrate", "up"], &[("DATABASE_URL", &url)])
        .output()
        .expect("chroot migrate up");
    assert!(
        migrate.status.success(),
        "migrate up in the root: {}\n{}",
        String::from_utf8_lossy(&migrate.stdout),
        String::from_utf8_lossy(&migrate.stderr)
    );

    let mut svc = Running::start(in_root(
        root,
        bin,
        &[],
        &[
            ("DATABASE_URL", &url),
            ("ADDR", "127.0.0.1:0"),
            ("ADMIN_ADDR", "127.0.0.1:0"),
            ("MIGRATE_ON_START", "false"),
            ("MAX_CONNECTIONS", "4"),
            ("DRAIN_DELAY", "100ms"),
        ],
    ));
    let listening = svc.wait_for("listening", Duration::from_secs(20));
    let addr: SocketAddr = listening["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("addr");
    let admin: SocketAddr = listening["admin_addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("admin");
    svc.wait_for("service ready", Duration::from_secs(20));

    let created = client::request(
        addr,
        "POST",
        "/api/v1/users",
        &[("Content-Type", "application/json")],
        br#"{"name":"Static Root","email":"static-root@example.com"}"#,
    )
    .expect("POST in the root");
    assert_eq!(created.status, 201, "{}\n{}", created.text(), svc.output());
    let id = created.json()["id"].as_i64().expect("id");
    let fetched = client::get(addr, &format!("/api/v1/users/{id}")).expect("GET");
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json()["email"], "static-root@example.com");

    // A request is counted just after its answer is written: the scrape may
    // come first on a busy machine, so scrape until the create shows.
    let counted = r#"http_requests_total{method="POST",path="/api/v1/users",status="201"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let metrics = client::get(admin, "/metrics").expect("scrape");
        assert_eq!(metrics.status, 200);
        let text = metrics.text();
        if text.contains(counted) || Instant::now() > deadline {
            break text;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains(counted), "metrics:\n{text}");
    assert!(text.contains("build_info{"), "metrics:\n{text}");

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(svc.child.id().to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(
        svc.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        svc.output()
    );
    svc.wait_for("shutdown complete", Duration::from_secs(1));
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn serves_from_an_empty_root_as_nobody() {
    let Some(bin) = release_binary() else { return };
    assert!(
        is_root(),
        "chroot needs root (CI and `make test-static` run as root)"
    );
    let root = temp_root("empty-root");
    std::fs::copy(&bin, root.join("usersvc")).expect("copy the binary");
    std::fs::create_dir_all(root.join("etc/ssl/certs")).expect("etc");
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )
    .expect("hosts");
    std::fs::copy(CA_BUNDLE, root.join("etc/ssl/certs/ca-certificates.crt")).expect("CA bundle");
    let mut entries: Vec<_> = walk(&root);
    entries.sort();
    assert_eq!(
        entries,
        ["etc/hosts", "etc/ssl/certs/ca-certificates.crt", "usersvc"],
        "the root holds more than it should"
    );
    serve_in_root(&root, "/usersvc");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn serves_from_the_image_root() {
    let Some(bin) = release_binary() else { return };
    assert!(
        is_root(),
        "chroot needs root (CI and `make test-static` run as root)"
    );
    let root = temp_root("image-root");
    let made = match std::env::var_os("USERSVC_IMAGE_ROOT") {
        // `make test-static`: a copy of what `make image-root` assembled.
        Some(built) => Command::new("cp")
            .arg("-a")
            .arg(Path::new(&built).join("."))
            .arg(&root)
            .output()
            .expect("cp -a the image root"),
        None => Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image-root.sh"))
            .arg(&bin)
            .arg(&root)
            .output()
            .expect("image-root.sh"),
    };
    assert!(
        made.status.success(),
        "image root: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut entries = walk(&root);
    entries.sort();
    assert_eq!(
        entries,
        [
            "etc/group",
            "etc/passwd",
            "etc/ssl/certs/ca-certificates.crt",
            "usr/local/bin/usersvc"
        ],
        "the image root holds more than the image should"
    );
    // Docker and Kubernetes mount /etc/hosts into the container.
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").expect("hosts");
    serve_in_root(&root, "/usr/local/bin/usersvc");
    let _ = std::fs::remove_dir_all(&root);
}

/// Every file under `dir`, relative.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .expect("read_dir")
            .filter_map(|e| e.ok())
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(dir)
                        .expect("prefix")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out
}
