//! systemd integration of the real binary, with a small launcher standing in
//! for systemd: it holds the two listening sockets and a `NOTIFY_SOCKET`,
//! and starts the service with the sockets at fds 3 and 4, `LISTEN_FDS=2`,
//! `LISTEN_FDNAMES=public:admin` and `LISTEN_PID` set to the service's pid.
//!
//! Shows: the service serves on the inherited sockets (not on `ADDR`), sends
//! `READY=1` once `/readyz` is 200, `WATCHDOG=1` at half `WATCHDOG_USEC`,
//! `STOPPING=1` on SIGTERM, exits 0, leaves the sockets listening, and a
//! connection made while no process runs is served by the next one.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::client;
use support::TestDb;

/// The launcher's side: the sockets it passes on and the notification socket.
struct Launcher {
    public: TcpListener,
    admin: TcpListener,
    notify: UnixDatagram,
    notify_path: PathBuf,
    db_url: String,
}

impl Launcher {
    fn new(db_url: &str) -> Launcher {
        let dir =
            std::env::temp_dir().join(format!("usersvc-notify-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let notify_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind NOTIFY_SOCKET");
        Launcher {
            public: TcpListener::bind("127.0.0.1:0").expect("bind public"),
            admin: TcpListener::bind("127.0.0.1:0").expect("bind admin"),
            notify,
            notify_path,
            db_url: db_url.to_owned(),
        }
    }

    fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().expect("addr")
    }

    fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("addr")
    }

    /// Starts the service as systemd would. `ADDR`/`ADMIN_ADDR` name ports
    /// nobody listens on: serving there would show the sockets were ignored.
    fn spawn(&self) -> Child {
        let (public, admin) = (self.public.as_raw_fd(), self.admin.as_raw_fd());
        let mut cmd = Command::new("/bin/sh");
        // `$$` is the shell's pid, which `exec` hands to usersvc.
        cmd.arg("-c")
            .arg(r#"LISTEN_PID=$$ exec "$0""#)
            .arg(support::service::BIN)
            .env_clear()
            .env("DATABASE_URL", &self.db_url)
            .env("ADDR", "127.0.0.1:1")
            .env("ADMIN_ADDR", "127.0.0.1:2")
            .env("LOG_FORMAT", "json")
            .env("DRAIN_DELAY", "200ms")
            .env("SHUTDOWN_TIMEOUT", "5s")
            .env("MAX_CONNECTIONS", "2")
            .env("LISTEN_FDS", "2")
            .env("LISTEN_FDNAMES", "public:admin")
            .env("NOTIFY_SOCKET", &self.notify_path)
            .env("WATCHDOG_USEC", "400000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl,
        // dup2) on fds this process holds open for the whole spawn. The
        // sockets are first moved above 10 so that placing them at 3 and 4
        // cannot overwrite one with the other; dup2 clears FD_CLOEXEC.
        unsafe {
            cmd.pre_exec(move || {
                let p = libc::fcntl(public, libc::F_DUPFD, 10);
                let a = libc::fcntl(admin, libc::F_DUPFD, 10);
                if p < 0 || a < 0 || libc::dup2(p, 3) < 0 || libc::dup2(a, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(p);
                libc::close(a);
                Ok(())
            });
        }
        cmd.spawn().expect("spawn usersvc under the launcher")
    }

    /// The next notification datagram, within `timeout`.
    fn next_notification(&self, timeout: Duration) -> Option<String> {
        self.notify
            .set_read_timeout(Some(timeout))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let n = self.notify.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Waits for a notification containing `line`, returning what came before.
    fn wait_for(&self, line: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_notification(left) {
                Some(m) if m.lines().any(|l| l == line) => return seen,
                Some(m) => seen.push(m),
                None => break,
            }
        }
        panic!("no {line} within {timeout:?}; got {seen:?}");
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.notify_path.parent().expect("dir"));
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -TERM failed");
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("usersvc did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn serves_on_inherited_sockets_notifies_systemd_and_hands_queued_connections_on() {
    let db = TestDb::new();
    let launcher = Launcher::new(db.url());

    // First process: READY=1 only once it is ready, on the inherited socket.
    let mut first = launcher.spawn();
    launcher.wait_for("READY=1", Duration::from_secs(30));
    let ready =
        client::get(launcher.public_addr(), "/readyz").expect("readyz on the inherited socket");
    assert_eq!(
        ready.status, 200,
        "READY=1 was sent before /readyz answered 200"
    );
    let metrics = client::get(launcher.admin_addr(), "/metrics")
        .expect("metrics on the inherited admin socket");
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("service_state{state=\"ready\"} 1"));
    assert!(
        TcpStream::connect("127.0.0.1:1").is_err(),
        "the service bound ADDR although systemd passed a socket"
    );
    // WatchdogSec: WATCHDOG=1 every 200 ms.
    launcher.wait_for("WATCHDOG=1", Duration::from_secs(2));
    launcher.wait_for("WATCHDOG=1", Duration::from_secs(2));

    // SIGTERM: STOPPING=1, then a clean exit.
    sigterm(&first);
    launcher.wait_for("STOPPING=1", Duration::from_secs(5));
    assert_eq!(
        wait_exit(&mut first, Duration::from_secs(15)).code(),
        Some(0)
    );

    // No process runs now. The socket still listens (the kernel completes the
    // handshake and queues the connection), so the request waits, not fails.
    let mut queued =
        TcpStream::connect(launcher.public_addr()).expect("connect while no process runs");
    queued
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send while no process runs");

    // The next process takes the socket over and answers it.
    let mut second = launcher.spawn();
    queued
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut reply = String::new();
    queued
        .read_to_string(&mut reply)
        .expect("the queued request is answered");
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "queued request got: {reply}"
    );
    launcher.wait_for("READY=1", Duration::from_secs(30));
    sigterm(&second);
    assert_eq!(
        wait_exit(&mut second, Duration::from_secs(15)).code(),
        Some(0)
    );
}

#[test]
fn an_inherited_socket_the_configuration_does_not_use_is_refused() {
    let db = TestDb::new();
    let launcher = Launcher::new(db.url());
    let (public, admin) = (launcher.public.as_raw_fd(), launcher.admin.as_raw_fd());
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0""#)
        .arg(support::service::BIN)
        .env_clear()
        .env("DATABASE_URL", db.url())
        .env("ADMIN_ADDR", "off")
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "public:admin")
        .stdin(Stdio::null())
        .output_with_fds(public, admin);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("systemd passed sockets the configuration does not use: admin"),
        "output: {text}"
    );
}

/// `Command::output` with two fds placed at 3 and 4 (as `Launcher::spawn`).
trait OutputWithFds {
    fn output_with_fds(&mut self, public: i32, admin: i32) -> std::process::Output;
}

impl OutputWithFds for Command {
    fn output_with_fds(&mut self, public: i32, admin: i32) -> std::process::Output {
        // SAFETY: as in `Launcher::spawn`.
        unsafe {
            self.pre_exec(move || {
                let p = libc::fcntl(public, libc::F_DUPFD, 10);
                let a = libc::fcntl(admin, libc::F_DUPFD, 10);
                if p < 0 || a < 0 || libc::dup2(p, 3) < 0 || libc::dup2(a, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(p);
                libc::close(a);
                Ok(())
            });
        }
        self.output().expect("run usersvc")
    }
}
