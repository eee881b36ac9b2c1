//! A private, throwaway PostgreSQL server.
//!
//! `initdb` into a temp directory owned by `postgres` (the server refuses to
//! run as root), a random free port on 127.0.0.1, its own unix-socket
//! directory, `fsync=off` for speed. Tests may `stop()` and `start()` it or
//! turn TLS on; Drop stops it immediately and removes the directory.

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the PostgreSQL binaries are (override with `USERSVC_PG_BIN`).
fn bin(name: &str) -> PathBuf {
    let dir =
        std::env::var("USERSVC_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned());
    Path::new(&dir).join(name)
}

/// uid/gid of the `postgres` account.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| (f[2].parse().ok(), f[3].parse().ok()))
                .and_then(|(u, g)| Some((u?, g?)))
        })
        .expect("a postgres user exists")
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// TLS material for the server.
pub struct ServerTls {
    /// The certificate chain (PEM).
    pub cert_pem: String,
    /// Its key (PEM).
    pub key_pem: String,
}

/// A running (or stopped) private cluster.
pub struct TempCluster {
    dir: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    extra: Vec<String>,
}

impl TempCluster {
    /// A started cluster without TLS.
    pub fn start_new() -> TempCluster {
        TempCluster::with_tls(None)
    }

    /// A started cluster, with `ssl=on` when `tls` is given. The certificate
    /// is valid for whatever names the caller generated it for; the server
    /// listens on 127.0.0.1 and 127.0.0.2 so tests can present a name the
    /// certificate does not cover.
    pub fn with_tls(tls: Option<ServerTls>) -> TempCluster {
        let dir =
            std::env::temp_dir().join(format!("usersvc-pg-{}", uuid::Uuid::new_v4().simple()));
        let data = dir.join("data");
        let socket_dir = dir.join("sock");
        std::fs::create_dir_all(&socket_dir).expect("create cluster dirs");
        std::fs::create_dir_all(&data).expect("create data dir");
        let as_root = running_as_root();
        if as_root {
            let (uid, gid) = postgres_ids();
            for p in [&dir, &data, &socket_dir] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let out = run_pg(
            &bin("initdb"),
            &[
                "-D",
                path_str(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));

        let mut extra = Vec::new();
        if let Some(tls) = tls {
            let cert = data.join("server.crt");
            let key = data.join("server.key");
            std::fs::write(&cert, tls.cert_pem).expect("write cert");
            std::fs::write(&key, tls.key_pem).expect("write key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod key");
            if as_root {
                let (uid, gid) = postgres_ids();
                for p in [&cert, &key] {
                    std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown cert");
                }
            }
            extra.extend([
                "-c ssl=on".to_owned(),
                format!("-c ssl_cert_file={}", cert.display()),
                format!("-c ssl_key_file={}", key.display()),
            ]);
        }

        let mut cluster = TempCluster {
            dir,
            data,
            socket_dir,
            port: 0,
            extra,
        };
        // A port freed by the kernel can be taken again before the server
        // binds it: retry with a new one a few times.
        for attempt in 0..5 {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(log) if attempt == 4 => panic!("pg_ctl start failed: {log}"),
                Err(_) => continue,
            }
        }
        unreachable!()
    }

    fn try_start(&self) -> Result<(), String> {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1,127.0.0.2 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=60",
            self.port,
            self.socket_dir.display()
        );
        for e in &self.extra {
            opts.push(' ');
            opts.push_str(e);
        }
        let log = self.dir.join("server.log");
        let out = run_pg(
            &bin("pg_ctl"),
            &[
                "-D",
                path_str(&self.data),
                "-l",
                path_str(&log),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                text(&out),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    /// Starts the server again on the same port.
    pub fn start(&self) {
        if let Err(log) = self.try_start() {
            panic!("pg_ctl start failed: {log}");
        }
    }

    /// Fast shutdown: open connections are terminated.
    pub fn stop(&self) {
        let out = run_pg(
            &bin("pg_ctl"),
            &["-D", path_str(&self.data), "-m", "fast", "-w", "stop"],
        );
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A TCP URL to database `postgres` as user `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A TCP URL with extra query parameters (e.g. `sslmode=require`).
    pub fn url_with(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }

    /// The data/log directory (for writing CA files next to it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = run_pg(
            &bin("pg_ctl"),
            &["-D", path_str(&self.data), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_pg(program: &Path, args: &[&str]) -> Output {
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .current_dir("/")
        .output()
        .expect("run a PostgreSQL binary")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
