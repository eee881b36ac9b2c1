//! The real binary: exit statuses and what reaches stdout and stderr.
//! Each run starts from an empty environment (plus `PATH`), so nothing of
//! the developer's shell leaks in.

use std::process::{Command, Output};

const PW: &str = "s3cr3t-pw";
const DB: &str = "postgres://app:s3cr3t-pw@127.0.0.1:5432/db";

fn usersvc(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_usersvc"));
    command.env_clear().args(args).envs(env.iter().copied());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run usersvc: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn several_bad_variables_exit_2_listing_every_error() {
    let bad = [
        ("MAX_CONNECTIONS", "abc"),
        ("WORKERS", "0"),
        ("READ_TIMEOUT", "5"),
        ("MAX_BODY_BYTES", "2GiB"),
        ("LOG_FORMAT", "xml"),
    ];
    let out = usersvc(&["--bogus"], &bad);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let mut lines = stderr.lines();
    assert_eq!(lines.next(), Some("usersvc: invalid configuration:"));
    let errors: Vec<&str> = lines.collect();
    // Each bad variable, the unknown flag and the missing DATABASE_URL.
    assert_eq!(errors.len(), bad.len() + 2, "{stderr}");
    for (var, value) in bad {
        assert!(
            errors
                .iter()
                .any(|l| l.trim_start().starts_with(var) && l.contains(&format!("{value:?}"))),
            "{var} missing:\n{stderr}"
        );
    }
    assert!(stderr.contains("--bogus: unknown flag"), "{stderr}");
    assert!(stderr.contains("DATABASE_URL: is required"), "{stderr}");
    assert!(
        errors
            .iter()
            .all(|l| l.contains("expected") || l.contains("unknown flag")),
        "{stderr}"
    );
}

#[test]
fn print_config_redacts_the_password() {
    let out = usersvc(&["--print-config"], &[("DATABASE_URL", DB)]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stdout.contains(PW) && !stderr.contains(PW),
        "{stdout}{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(json["DATABASE_URL"], "postgres://app:***@127.0.0.1:5432/db");
    assert_eq!(json["ADDR"], "0.0.0.0:8080");
    assert_eq!(json["MAX_BODY_BYTES"], "1MiB");
    assert_eq!(json["SHUTDOWN_TIMEOUT"], "25s");
    // Pretty-printed: one key a line.
    assert!(stdout.lines().count() > 20, "{stdout}");

    // Given by flag, with a Redis password too.
    let out = usersvc(
        &[
            "--print-config",
            "--database-url",
            DB,
            "--redis-url=redis://:s3cr3t-pw@cache",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(PW), "{all}");
    assert!(all.contains("redis://***@cache"), "{all}");
}

#[test]
fn an_invalid_config_does_not_leak_the_password() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        (&[], &[("DATABASE_URL", DB), ("MAX_CONNECTIONS", "0")]),
        (
            &["--print-config"],
            &[("DATABASE_URL", DB), ("DRAIN_DELAY", "1h")],
        ),
        (
            &[],
            &[(
                "DATABASE_URL",
                "postgres://app:s3cr3t-pw@127.0.0.1:99999/db",
            )],
        ),
        (
            &["--databse-url=postgres://app:s3cr3t-pw@127.0.0.1/db"],
            &[("DATABASE_URL", DB)],
        ),
    ];
    for (args, env) in cases {
        let out = usersvc(args, env);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {all}");
        assert!(!all.contains(PW), "{args:?} {env:?} leaked: {all}");
        assert!(all.contains("usersvc: invalid configuration:"), "{all}");
    }
}

#[test]
fn version_prints_version_and_commit() {
    let out = usersvc(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let line = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    // The commit is not compared with the test's own build_info: the binary
    // and this test are separate compilations.
    let rest = line
        .strip_prefix(&format!(
            "usersvc {} (commit ",
            usersvc::build_info::VERSION
        ))
        .unwrap_or_else(|| panic!("{line}"));
    let commit = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line}"));
    assert!(!commit.is_empty() && !commit.contains(' '), "{line}");
    assert_eq!(usersvc(&["-V"], &[]).stdout, out.stdout);
}

#[test]
fn help_exits_0_without_any_configuration() {
    for flag in ["--help", "-h"] {
        let out = usersvc(&[flag], &[("MAX_CONNECTIONS", "nonsense")]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("DATABASE_URL"), "{stdout}");
        assert!(stdout.contains("--max-connections"), "{stdout}");
        assert!(out.stderr.is_empty());
    }
}

#[test]
fn output_into_a_closed_pipe_is_not_a_crash() {
    // `usersvc --help | head -1`: the reader may be gone before we write.
    for args in [&["--help"][..], &["--version"], &["--print-config"]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_usersvc"))
            .env_clear()
            .env("DATABASE_URL", DB)
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run usersvc");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn errors_into_a_closed_pipe_keep_their_exit_code() {
    // `usersvc --workers 0 2>&1 | head -0`: the error has nowhere to go, but
    // the exit code must still say "invalid configuration", not "panicked".
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_usersvc"))
        .env_clear()
        .env("DATABASE_URL", DB)
        .args(["--workers", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(writer)
        .output()
        .expect("run usersvc");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
}
