//! The connect spec: a database URL (or libpq key=value string) read into a
//! driver `Config` plus the TLS wishes the driver cannot express. Produced
//! once, by `DATABASE_URL`'s validation ([`super::DatabaseUrl`]), and
//! consumed by `db` for every connection it opens.
//!
//! tokio-postgres understands `sslmode=disable|prefer|require` only and has no
//! `sslrootcert`; operators write libpq strings with `verify-ca`,
//! `verify-full` and a CA path. So we lift `sslmode` and `sslrootcert` out of
//! the string ourselves (both syntaxes), hand the rest to the driver, and keep
//! the two values for `db::tls`. Pure string work, unit-tested here.
//! No error produced here ever contains the input string (it holds the password).

use std::path::PathBuf;
use std::str::FromStr;

use crate::error_chain::chain;
use crate::percent::PercentError;

/// Why a connection string cannot be used. Never contains the string (it
/// holds the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSpecError(String);

impl std::fmt::Display for ConnectSpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectSpecError {}

/// libpq's `sslmode` values that we honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS or fail; the certificate is not verified (unless a CA file is given,
    /// which libpq also treats as `verify-ca`).
    Require,
    /// TLS, certificate chain verified against the CA; host name not checked.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = ConnectSpecError;
    fn from_str(s: &str) -> Result<Self, ConnectSpecError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ConnectSpecError(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            )))
            }
        })
    }
}

/// A parsed connection string.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Everything the driver understands (host, port, user, password, dbname...).
    pub config: postgres::Config,
    /// The requested TLS mode (default `prefer`, as libpq).
    pub ssl_mode: SslMode,
    /// `sslrootcert`: a PEM file of CA certificates to trust instead of webpki-roots.
    pub root_cert: Option<PathBuf>,
}

impl ConnectSpec {
    /// Parses a `postgres://` / `postgresql://` URL or a key=value string.
    pub fn parse(input: &str) -> Result<ConnectSpec, ConnectSpecError> {
        let trimmed = input.trim();
        let (rest, ssl_mode, root_cert) = if is_url(trimmed) {
            strip_url(trimmed)?
        } else {
            strip_key_value(trimmed)?
        };
        let mut config = postgres::Config::from_str(&rest)
            .map_err(|e| ConnectSpecError(format!("DATABASE_URL: {}", chain(&e))))?;
        let ssl_mode = match ssl_mode {
            Some(m) => m.parse()?,
            None => SslMode::Prefer,
        };
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        Ok(ConnectSpec {
            config,
            ssl_mode,
            root_cert: root_cert.filter(|p| !p.is_empty()).map(PathBuf::from),
        })
    }

    /// The password as text, for scrubbing messages (see `db::error::redact`).
    pub fn password(&self) -> Option<String> {
        self.config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

type Stripped = (String, Option<String>, Option<String>);

fn strip_url(url: &str) -> Result<Stripped, ConnectSpecError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(k)?.as_str() {
            "sslmode" => mode = Some(percent_decode(v)?),
            "sslrootcert" => root = Some(percent_decode(v)?),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, root))
}

/// [`crate::percent::decode_strict`], as a configuration error.
fn percent_decode(s: &str) -> Result<String, ConnectSpecError> {
    crate::percent::decode_strict(s).map_err(|e| {
        ConnectSpecError(
            match e {
                PercentError::BrokenEscape => "DATABASE_URL: bad percent-encoding",
                PercentError::NotUtf8 => "DATABASE_URL: percent-encoding is not UTF-8",
            }
            .into(),
        )
    })
}

/// Splits a libpq key=value string into (key, value) pairs, honouring
/// single quotes and backslash escapes as libpq does.
fn split_key_value(s: &str) -> Result<Vec<(String, String)>, ConnectSpecError> {
    let bad = |what: &str| ConnectSpecError(format!("DATABASE_URL: {what}"));
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad("expected `key=value`"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(bad("unterminated quoted value")),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or_else(|| bad("dangling `\\`"))?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or_else(|| bad("dangling `\\`"))?);
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn strip_key_value(s: &str) -> Result<Stripped, ConnectSpecError> {
    let (mut mode, mut root) = (None, None);
    let mut rest = String::new();
    for (k, v) in split_key_value(s)? {
        match k.as_str() {
            "sslmode" => mode = Some(v),
            "sslrootcert" => root = Some(v),
            _ => {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                let escaped = v.replace('\\', "\\\\").replace('\'', "\\'");
                rest.push_str(&format!("{k}='{escaped}'"));
            }
        }
    }
    Ok((rest, mode, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_without_tls_options_defaults_to_prefer() {
        let d = ConnectSpec::parse("postgres://u:pw@db.example:6543/app").expect("parse");
        assert_eq!(d.ssl_mode, SslMode::Prefer);
        assert_eq!(d.root_cert, None);
        assert_eq!(d.config.get_dbname(), Some("app"));
        assert_eq!(d.config.get_ports(), &[6543]);
        assert_eq!(d.password().as_deref(), Some("pw"));
    }

    #[test]
    fn url_strips_sslmode_and_rootcert_keeps_the_rest() {
        let d = ConnectSpec::parse(
            "postgresql://u@h/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20b.pem",
        )
        .expect("parse");
        assert_eq!(d.ssl_mode, SslMode::VerifyFull);
        assert_eq!(d.root_cert, Some(PathBuf::from("/etc/ca b.pem")));
        assert_eq!(d.config.get_application_name(), Some("x"));
        assert_eq!(d.config.get_ssl_mode(), postgres::config::SslMode::Require);
    }

    #[test]
    fn key_value_with_quotes_and_escapes() {
        let d = ConnectSpec::parse(
            r"host=127.0.0.1 port = 5432 user=postgres password='it''s' sslmode=verify-ca sslrootcert='/tmp/my ca.pem' dbname=a\ b",
        );
        // `''` is not an escape in libpq: that string is malformed after `'it'`.
        assert!(d.is_err());
        let d = ConnectSpec::parse(
            r"host=127.0.0.1 port = 5432 user=postgres password='it\'s sec' sslmode=verify-ca sslrootcert='/tmp/my ca.pem' dbname=a\ b",
        )
        .expect("parse");
        assert_eq!(d.ssl_mode, SslMode::VerifyCa);
        assert_eq!(d.root_cert, Some(PathBuf::from("/tmp/my ca.pem")));
        assert_eq!(d.password().as_deref(), Some("it's sec"));
        assert_eq!(d.config.get_dbname(), Some("a b"));
        assert_eq!(d.config.get_ports(), &[5432]);
    }

    #[test]
    fn disable_and_require_map_to_driver_modes() {
        let d = ConnectSpec::parse("host=h sslmode=disable").expect("parse");
        assert_eq!(d.config.get_ssl_mode(), postgres::config::SslMode::Disable);
        let d = ConnectSpec::parse("postgres://h/db?sslmode=require").expect("parse");
        assert_eq!(d.ssl_mode, SslMode::Require);
    }

    #[test]
    fn errors_never_echo_the_input() {
        for bad in [
            "postgres://u:s3cretpw@h/db?sslmode=sometimes",
            "postgres://u:s3cretpw@h:notaport/db",
            "host=h password=s3cretpw sslmode=verify",
            "host=h password='s3cretpw",
            "postgres://u:s3cretpw@h/db?x=%zz",
        ] {
            let e = ConnectSpec::parse(bad).expect_err(bad);
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("s3cretpw"), "{shown}");
        }
    }
}
