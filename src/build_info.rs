//! What was built: version and git commit, embedded by `build.rs`.

/// The version: a `v*` tag on the built commit, else the package version;
/// `dev` when built outside a git checkout.
pub const VERSION: &str = env!("USERSVC_VERSION");

/// The short git commit (`-dirty` if the tree had changes); `unknown` outside
/// a git checkout.
pub const COMMIT: &str = env!("USERSVC_GIT_COMMIT");
