//! The `usersvc` binary: wiring only.

fn main() {
    std::process::exit(0);
}
