//! One line for an error and its causes: `err: cause: cause …`.
//!
//! Why it exists: drivers' own `Display` often says only the outermost
//! thing ("error performing TLS handshake") and hides the cause an operator
//! needs. Used by `config` (connection strings) and `db` (every driver
//! error), so it sits below both.

use std::error::Error as StdError;

/// `err: cause: cause ...` for any error; a cause whose text the line
/// already ends with is not repeated.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}
