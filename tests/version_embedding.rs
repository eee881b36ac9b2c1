//! build.rs's precedence for the embedded version and commit:
//! `USERSVC_VERSION` / `USERSVC_COMMIT` over git over the Cargo version.
//! The script is compiled on its own with rustc and run three ways: in a
//! directory without `.git` (a Docker build context), there with the build
//! args set, and in this checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// build.rs compiled as if its package lived in `manifest_dir`.
fn compile_for(manifest_dir: &Path, out: &Path) {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2021", "-o"])
        .arg(out)
        .arg(Path::new(ROOT).join("build.rs"))
        .env("CARGO_MANIFEST_DIR", manifest_dir)
        .env("CARGO_PKG_VERSION", env!("CARGO_PKG_VERSION"))
        .status()
        .expect("run rustc");
    assert!(status.success(), "rustc build.rs failed");
}

/// (version, commit) the script emits with `env`.
fn emitted(script: &Path, env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new(script)
        .env_remove("USERSVC_VERSION")
        .env_remove("USERSVC_COMMIT")
        .env_remove("USERSVC_GIT_COMMIT")
        .envs(env.iter().copied())
        .output()
        .expect("run build script");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("cargo:rustc-env={key}=")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    };
    (get("USERSVC_VERSION"), get("USERSVC_GIT_COMMIT"))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("usersvc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn build_args_over_git_over_the_cargo_version() {
    let work = temp_dir("buildrs");
    let no_git = temp_dir("no-git-context");

    let outside = work.join("outside");
    compile_for(&no_git, &outside);
    assert_eq!(
        emitted(&outside, &[]),
        (env!("CARGO_PKG_VERSION").to_owned(), "unknown".to_owned()),
        "without .git: the Cargo version and `unknown`"
    );
    assert_eq!(
        emitted(
            &outside,
            &[("USERSVC_VERSION", "1.2.3"), ("USERSVC_COMMIT", "abc123")]
        ),
        ("1.2.3".to_owned(), "abc123".to_owned()),
        "build args win"
    );

    let inside = work.join("inside");
    compile_for(Path::new(ROOT), &inside);
    let in_git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(ROOT)
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        let (_, commit) = emitted(&inside, &[]);
        assert!(
            commit.len() >= 12 && commit[..12].chars().all(|c| c.is_ascii_hexdigit()),
            "in a checkout the commit is the short hash: {commit}"
        );
        assert_eq!(
            emitted(&inside, &[("USERSVC_COMMIT", "fromenv")]).1,
            "fromenv"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&no_git);
}
