//! `examples/drain_pattern.rs` — the pattern ARCHITECTURE.md teaches — serves
//! and drains: a request a worker holds when SIGTERM arrives is still
//! answered, then the process exits 0.
//!
//! `cargo test` builds the examples next to the test binaries
//! (`target/<profile>/examples/`), so the test runs the real example. (With
//! `cargo test --test example_drain_pattern` alone, build it first:
//! `cargo build --example drain_pattern`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

fn example_binary() -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples/drain_pattern,
    // which `cargo test` (without target filters) builds and keeps current.
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join("drain_pattern")
}

/// Kills the example if the test fails half-way (it inherits stdout).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a stderr line containing `needle`, returning it.
fn wait_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

#[test]
fn the_example_serves_and_drains_a_request_in_flight() {
    let mut child = KillOnDrop(
        Command::new(example_binary())
            .arg("127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run examples/drain_pattern (built by cargo test)"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let listening = wait_line(&lines, "listening on ");
    let addr = listening.rsplit(' ').next().expect("address").to_owned();

    // A worker takes the connection and waits for the rest of the head.
    let mut client = TcpStream::connect(&addr).expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    wait_line(&lines, "took a connection");

    let pid = child.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    wait_line(&lines, "shutdown signal");

    // New connections are no longer taken …
    // … but the request in flight is finished and answered.
    client.write_all(b"\r\n").expect("finish the head");
    let mut response = String::new();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    client.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");

    wait_line(&lines, "shutdown complete");
    let exit = child.0.wait().expect("exit");
    assert_eq!(exit.code(), Some(0));
}
