//! The real `usersvc` binary as a child process: started with a chosen
//! environment on ephemeral ports, its JSON log lines collected, signalled
//! and awaited. Process-level tests assert what an operator sees: statuses,
//! log lines and exit codes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_usersvc");

#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    out: Arc<Lines>,
    /// The stdout and stderr reader threads, joined once the process exits.
    readers: Vec<thread::JoinHandle<()>>,
}

/// The environment every test service starts from: ephemeral ports, JSON
/// logs, short timeouts. `DATABASE_URL` must be given by the caller.
pub fn base_env() -> Vec<(String, String)> {
    [
        ("ADDR", "127.0.0.1:0"),
        ("ADMIN_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "json"),
        ("LOG_LEVEL", "info"),
        ("DRAIN_DELAY", "300ms"),
        ("SHUTDOWN_TIMEOUT", "5s"),
        ("MAX_CONNECTIONS", "4"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Service {
    /// Starts the binary with `base_env()` overridden by `env` and waits for
    /// its `listening` line.
    pub fn start(env: &[(&str, &str)]) -> Service {
        let mut vars = base_env();
        for (k, v) in env {
            vars.retain(|(ek, _)| ek != k);
            vars.push((k.to_string(), v.to_string()));
        }
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn usersvc");
        let out = Arc::new(Lines::default());
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let out = Arc::clone(&out);
            readers.push(thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lines.lock().expect("lock").push(line);
                    out.changed.notify_all();
                }
            }));
        }
        let mut svc = Service {
            child,
            addr: "0.0.0.0:0".parse().expect("addr"),
            admin: None,
            out,
            readers,
        };
        let listening = svc.wait_for_log(|v| v["msg"] == "listening", Duration::from_secs(20));
        svc.addr = listening["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("addr field");
        svc.admin = listening["admin_addr"]
            .as_str()
            .and_then(|a| a.parse().ok());
        svc
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every output line so far (stdout and stderr, in arrival order).
    pub fn lines(&self) -> Vec<String> {
        self.out.lines.lock().expect("lock").clone()
    }

    /// Every output line that is a JSON object.
    pub fn logs(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Waits for a JSON log line matching `pred`; panics with the output on
    /// timeout.
    pub fn wait_for_log(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut guard = self.out.lines.lock().expect("lock");
        loop {
            if let Some(v) = guard
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| pred(v))
            {
                return v;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "log line not seen within {timeout:?}; output:\n{}",
                    guard.join("\n")
                );
            }
            guard = self
                .out
                .changed
                .wait_timeout(guard, deadline - now)
                .expect("wait")
                .0;
        }
    }

    /// Polls `/readyz` on the public listener until 200.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if super::client::get(self.addr, "/readyz").is_ok_and(|r| r.status == 200) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "not ready within {timeout:?}; output:\n{}",
            self.lines().join("\n")
        );
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit; panics (after killing it) on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Every line the process wrote is read: the readers end at
                // the pipes' end of file, which its exit closed.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "did not exit within {timeout:?}; output:\n{}",
                    self.lines().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
