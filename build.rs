//! Embeds the version and git commit into the binary (`usersvc --version`,
//! the `build_info` metric).
//!
//! In order of precedence:
//! 1. `USERSVC_VERSION` / `USERSVC_COMMIT` from the environment (the
//!    Dockerfile's build args: a Docker context has no `.git`);
//!    `USERSVC_GIT_COMMIT` is still read as an older name of the latter;
//! 2. git: version = the `v*` tag on HEAD (without the `v`), commit = the
//!    short hash (`-dirty` when the tracked tree has changes);
//! 3. the Cargo package version, and commit `unknown`.
//!
//! The static release target also relinks when its code layout changes
//! (scripts/release/text-order.txt).
//!
//! Also: `--cfg usersvc_loom` in RUSTFLAGS (the loom build of
//! scripts/run-tests.sh) turns on `cfg(loom)` for this crate only. A global
//! `--cfg loom` would reach our dependencies too, and tokio compiles its
//! networking out under it (tokio-postgres then fails to build).

use std::process::Command;

fn main() {
    if std::env::var_os("CARGO_CFG_USERSVC_LOOM").is_some() {
        println!("cargo:rustc-cfg=loom");
    }
    println!("cargo:rerun-if-env-changed=USERSVC_VERSION");
    println!("cargo:rerun-if-env-changed=USERSVC_COMMIT");
    println!("cargo:rerun-if-env-changed=USERSVC_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    println!("cargo:rerun-if-changed=.git/refs/tags");
    // The static release build's linker lays out the code by this list
    // (scripts/release/link.sh); cargo does not know the linker reads it.
    if std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-musl") {
        println!("cargo:rerun-if-changed=scripts/release/text-order.txt");
        println!("cargo:rerun-if-changed=scripts/release/link.sh");
    }

    let in_git = git(&["rev-parse", "--is-inside-work-tree"]).is_some();
    let version = env("USERSVC_VERSION").unwrap_or_else(|| {
        if !in_git {
            return env!("CARGO_PKG_VERSION").to_owned();
        }
        git(&["describe", "--tags", "--exact-match", "--match", "v*"])
            .map(|tag| tag.trim_start_matches('v').to_owned())
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned())
    });
    let commit = env("USERSVC_COMMIT")
        .or_else(|| env("USERSVC_GIT_COMMIT"))
        .or_else(|| {
            if !in_git {
                return None;
            }
            let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{hash}-dirty") } else { hash })
        })
        .unwrap_or_else(|| "unknown".to_owned());

    println!("cargo:rustc-env=USERSVC_VERSION={version}");
    println!("cargo:rustc-env=USERSVC_GIT_COMMIT={commit}");
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Runs git in the package directory; `None` when git is missing, fails, or
/// prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}
