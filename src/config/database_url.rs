//! `DATABASE_URL`: a PostgreSQL connection string, validated at start-up and
//! printable without its password.
//!
//! Why a type: the string is parsed once, into the [`ConnectSpec`] every
//! database connection is made from (it also knows libpq's
//! `sslmode=verify-ca|verify-full` and `sslrootcert`), so a typo fails at
//! start-up with exit status 2 instead of at the first request. The raw string is a [`Secret`]; `Display` and
//! `Debug` show a redacted copy in the operator's own form
//! (`postgres://app:***@db:5432/users?sslmode=require` or
//! `host=db user=app password=*** dbname=users`). Errors never echo the
//! string: a parse failure may sit anywhere, including in the password.
//!
//! What is refused so that no byte of a password can be printed, however
//! carelessly it was written (property-tested in
//! `tests/config_redaction_property.rs`): a URL with more than one `@` (the
//! driver ends the credentials at the first, so the rest of a password
//! holding an `@` would become the host), and a `key=value` string with text
//! that is not a pair (the driver silently ignores everything after a stray
//! `=`). Empty query parameters after `password=` are masked with it. What
//! cannot be told apart is taken as written: `?password=a&sslmode=require`
//! is a password `a` and an `sslmode`, so a password's `&` must be `%26`.

use std::fmt;

use super::connect_spec::ConnectSpec;
use super::secret::Secret;

/// What a redacted password is replaced with.
const MASK: &str = "***";

/// A validated PostgreSQL connection string; see the module docs.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: Secret<String>,
    spec: ConnectSpec,
    redacted: String,
}

/// Why a connection string was refused. `Display` never contains any part
/// of the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseUrlError {
    /// Neither a `postgres://` URL nor valid `key=value` pairs, or an
    /// option has an invalid value.
    Invalid,
    /// A URL with another scheme (`mysql://`, `postgre://`, ...).
    UnsupportedScheme,
    /// Parsed, but names no host (`host`, `hostaddr` or URL authority).
    NoHost,
    /// A URL with more than one unencoded `@`: the driver ends the
    /// credentials at the first one, so a password holding an `@` would
    /// connect as the wrong password to a host made of the rest of it.
    AmbiguousAt,
}

impl fmt::Display for DatabaseUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatabaseUrlError::Invalid => "is not a valid PostgreSQL connection string",
            DatabaseUrlError::UnsupportedScheme => {
                "is a URL whose scheme is not postgres:// or postgresql://"
            }
            DatabaseUrlError::NoHost => "names no host",
            DatabaseUrlError::AmbiguousAt => {
                "is a URL with more than one `@`; write an `@` in the password (or anywhere \
                 after the host) as %40"
            }
        })
    }
}

impl std::error::Error for DatabaseUrlError {}

impl DatabaseUrl {
    /// Validates a connection string: a `postgres://` / `postgresql://` URL
    /// or libpq `key=value` pairs, with at least one host.
    pub fn parse(text: &str) -> Result<Self, DatabaseUrlError> {
        if url_rest(text.trim()).is_some_and(|(_, rest)| rest.matches('@').count() > 1) {
            return Err(DatabaseUrlError::AmbiguousAt);
        }
        let spec = ConnectSpec::parse(text).map_err(|_| {
            if url_rest(text).is_none() && looks_like_other_url(text) {
                DatabaseUrlError::UnsupportedScheme
            } else {
                DatabaseUrlError::Invalid
            }
        })?;
        let parsed = &spec.config;
        if parsed.get_hosts().is_empty() && parsed.get_hostaddrs().is_empty() {
            return Err(DatabaseUrlError::NoHost);
        }
        let redacted = redact_checked(text, parsed.get_password().is_some())
            .ok_or(DatabaseUrlError::Invalid)?;
        Ok(DatabaseUrl {
            raw: Secret::new(text.to_owned()),
            redacted,
            spec,
        })
    }

    /// The driver configuration (a part of [`DatabaseUrl::connect_spec`]).
    pub fn pg_config(&self) -> &postgres::Config {
        &self.spec.config
    }

    /// What every database connection is made from.
    pub fn connect_spec(&self) -> &ConnectSpec {
        &self.spec
    }

    /// The string as given, password included. Hand it only to a client
    /// that needs the string form.
    pub fn expose_secret(&self) -> &str {
        self.raw.expose_secret()
    }

    /// The string with every password replaced by `***`, in the form it was
    /// given in.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted).finish()
    }
}

/// `scheme://` with a scheme that is not ours.
fn looks_like_other_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// The part after `postgres://` or `postgresql://`, if `text` is a URL.
fn url_rest(text: &str) -> Option<(&str, &str)> {
    ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix).map(|rest| (*prefix, rest)))
}

/// Redacts, then proves the result holds no password: re-parsing it must
/// give `***` (or no password when there was none). Should the redaction
/// ever disagree with the driver's parser, a fixed placeholder is shown
/// instead of anything that might contain the password. `None`: a
/// `key=value` string with text the scan could not read as pairs (the
/// driver silently ignores everything after a stray `=`, which may be the
/// rest of a password), refused.
fn redact_checked(text: &str, had_password: bool) -> Option<String> {
    let redacted = match url_rest(text.trim()) {
        Some((prefix, rest)) => format!("{prefix}{}", redact_url(rest)),
        None => redact_key_values(text)?,
    };
    let reparsed = ConnectSpec::parse(&redacted).map(|spec| spec.config);
    let safe = match reparsed {
        Ok(config) => match config.get_password() {
            Some(password) => password == MASK.as_bytes(),
            None => !had_password,
        },
        Err(_) => false,
    };
    Some(if safe {
        redacted
    } else {
        "[REDACTED]".to_owned()
    })
}

/// Redacts the URL form after its scheme, splitting it the way
/// tokio-postgres does: credentials end at the first `@`, the query starts
/// at the first `?` after them, parameters are `&`-separated `key=value`.
fn redact_url(rest: &str) -> String {
    let mut out = String::with_capacity(rest.len());
    let after_creds = match rest.split_once('@') {
        Some((creds, after)) => {
            match creds.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(creds),
            }
            out.push('@');
            after
        }
        None => rest,
    };
    let Some((before_query, query)) = after_creds.split_once('?') else {
        out.push_str(after_creds);
        return out;
    };
    out.push_str(before_query);
    out.push('?');
    let mut params: Vec<String> = Vec::new();
    let mut in_password = false;
    for param in query.split('&') {
        match param.split_once('=') {
            // Empty parameters are dropped by the parser: after a password
            // they are most likely `&`s of it.
            _ if in_password && param.is_empty() => {}
            Some((key, _)) if crate::percent::decode_lossy(key) == "password" => {
                params.push(format!("{key}={MASK}"));
                in_password = true;
            }
            _ => {
                params.push(param.to_owned());
                in_password = false;
            }
        }
    }
    out.push_str(&params.join("&"));
    out
}

/// Redacts libpq `key=value` pairs, scanning them the way tokio-postgres
/// does: whitespace around `=`, values plain or single-quoted, `\` escapes
/// the next character. The text outside `password` values is kept as is.
/// `None` when anything but whitespace is left that is not a pair.
fn redact_key_values(text: &str) -> Option<String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|(_, c)| *c);
    let offset = |i: usize| chars.get(i).map_or(text.len(), |(o, _)| *o);
    let mut out = String::with_capacity(text.len());
    let mut copied_to = 0; // byte offset up to which `text` is in `out`
    let mut i = 0;
    loop {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let key_start = i;
        while at(i).is_some_and(|c| !c.is_whitespace() && c != '=') {
            i += 1;
        }
        if i == key_start {
            break;
        }
        let key = &text[offset(key_start)..offset(i)];
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) != Some('=') {
            break;
        }
        i += 1;
        // The mask starts right after `=`: blanks before a value are not
        // part of it for the parser, but may be for whoever wrote it.
        let after_equals = i;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let quoted = at(i) == Some('\'');
        if quoted {
            i += 1;
        }
        while let Some(c) = at(i) {
            if (quoted && c == '\'') || (!quoted && c.is_whitespace()) {
                break;
            }
            i += if c == '\\' { 2 } else { 1 };
        }
        if quoted && at(i) == Some('\'') {
            i += 1;
        }
        let value_end = i.min(chars.len());
        if key == "password" {
            out.push_str(&text[copied_to..offset(after_equals)]);
            out.push_str(MASK);
            copied_to = offset(value_end);
        }
        i = value_end;
    }
    if i < chars.len() {
        return None;
    }
    out.push_str(&text[copied_to..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "s3cr3t-pw";

    fn redacted(text: &str) -> String {
        match DatabaseUrl::parse(text) {
            Ok(url) => url.to_string(),
            Err(e) => panic!("{text} refused: {e}"),
        }
    }

    #[test]
    fn url_form_keeps_everything_but_the_password() {
        let cases = [
            (
                "postgres://app:s3cr3t-pw@db:5432/users?sslmode=require",
                "postgres://app:***@db:5432/users?sslmode=require",
            ),
            (
                "postgresql://app:s3cr3t-pw@db/users",
                "postgresql://app:***@db/users",
            ),
            ("postgres://app@db/users", "postgres://app@db/users"),
            ("postgres://db:5432/users", "postgres://db:5432/users"),
            (
                "postgres://app:s3cr3t-pw@[::1]:5432/users",
                "postgres://app:***@[::1]:5432/users",
            ),
            (
                "postgres://app:s3cr3t-pw@h1:5432,h2:5433/users",
                "postgres://app:***@h1:5432,h2:5433/users",
            ),
            (
                "postgres://app@db/users?password=s3cr3t-pw&sslmode=disable",
                "postgres://app@db/users?password=***&sslmode=disable",
            ),
            (
                "postgres://app@db/users?sslmode=disable&pass%77ord=s3cr3t-pw",
                "postgres://app@db/users?sslmode=disable&pass%77ord=***",
            ),
            (
                "postgres://app:s3cr3t-pw@db/users?password=s3cr3t-pw",
                "postgres://app:***@db/users?password=***",
            ),
            (
                "postgres://app:s3cr3t%40pw@db/users",
                "postgres://app:***@db/users",
            ),
            ("postgres://app:@db/users", "postgres://app:***@db/users"),
            (
                "postgres:///users?host=%2Fvar%2Frun%2Fpostgresql&password=s3cr3t-pw",
                "postgres:///users?host=%2Fvar%2Frun%2Fpostgresql&password=***",
            ),
        ];
        for (given, want) in cases {
            assert_eq!(redacted(given), want, "{given}");
        }
    }

    #[test]
    fn key_value_form_keeps_everything_but_the_password() {
        let cases = [
            (
                "host=db user=app password=s3cr3t-pw dbname=users",
                "host=db user=app password=*** dbname=users",
            ),
            (
                "host=db password = s3cr3t-pw user=app",
                "host=db password =*** user=app",
            ),
            (
                "host=db password='s3cr3t pw with spaces' user=app",
                "host=db password=*** user=app",
            ),
            (
                r"host=db password='it\'s s3cr3t-pw' user=app",
                "host=db password=*** user=app",
            ),
            (
                r"host=db password=s3cr3t\ pw user=app",
                "host=db password=*** user=app",
            ),
            ("host=db user=app", "host=db user=app"),
            (
                "  host=db\tpassword=s3cr3t-pw  ",
                "  host=db\tpassword=***  ",
            ),
            (
                "password=a host=db password=s3cr3t-pw",
                "password=*** host=db password=***",
            ),
        ];
        for (given, want) in cases {
            assert_eq!(redacted(given), want, "{given}");
        }
    }

    #[test]
    fn keeps_the_parsed_config_and_the_raw_string() {
        let text = "postgres://app:s3cr3t-pw@db:6543/users?sslmode=disable";
        let url = DatabaseUrl::parse(text).expect("valid");
        assert_eq!(url.pg_config().get_user(), Some("app"));
        assert_eq!(url.pg_config().get_password(), Some(PW.as_bytes()));
        assert_eq!(url.pg_config().get_dbname(), Some("users"));
        assert_eq!(url.pg_config().get_ports(), &[6543]);
        assert_eq!(url.expose_secret(), text);
    }

    #[test]
    fn debug_is_redacted() {
        let url = DatabaseUrl::parse("host=db password=s3cr3t-pw").expect("valid");
        let printed = format!("{url:?} {url:#?} {url}");
        assert!(!printed.contains(PW), "{printed}");
        assert!(printed.contains("password=***"), "{printed}");
    }

    #[test]
    fn refuses_invalid_strings_without_echoing_them() {
        let cases = [
            ("not a url s3cr3t-pw", DatabaseUrlError::Invalid),
            ("host=db password", DatabaseUrlError::Invalid),
            ("host=db password='s3cr3t-pw", DatabaseUrlError::Invalid),
            ("host=db bogus=s3cr3t-pw", DatabaseUrlError::Invalid),
            (
                "postgres://app:s3cr3t-pw@db:99999/users",
                DatabaseUrlError::Invalid,
            ),
            (
                "postgres://app:s3cr3t-pw@db/users?sslmode=maybe",
                DatabaseUrlError::Invalid,
            ),
            (
                "postgres://app:s3cr3t-pw@[::1/users",
                DatabaseUrlError::Invalid,
            ),
            (
                "mysql://app:s3cr3t-pw@db/users",
                DatabaseUrlError::UnsupportedScheme,
            ),
            (
                "postgre://app:s3cr3t-pw@db/users",
                DatabaseUrlError::UnsupportedScheme,
            ),
            ("postgres://", DatabaseUrlError::NoHost),
            ("postgres:///users", DatabaseUrlError::NoHost),
            ("user=app password=s3cr3t-pw", DatabaseUrlError::NoHost),
        ];
        for (given, want) in cases {
            match DatabaseUrl::parse(given) {
                Ok(url) => panic!("{given} accepted as {url}"),
                Err(e) => {
                    assert_eq!(e, want, "{given}");
                    assert!(!e.to_string().contains(PW));
                }
            }
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(crate::percent::decode_lossy("pass%77ord"), "password");
        assert_eq!(crate::percent::decode_lossy("%70assword"), "password");
        assert_eq!(crate::percent::decode_lossy("a%2"), "a%2");
        assert_eq!(crate::percent::decode_lossy("%zz%"), "%zz%");
    }

    #[test]
    fn redaction_fallback_hides_everything() {
        // Inputs the redactor never sees (it only gets strings that parsed,
        // with the truth about their password), to prove the check.
        assert_eq!(
            redact_checked("host=db", true).as_deref(),
            Some("[REDACTED]")
        );
        assert_eq!(
            redact_checked("host=db password=x", true).as_deref(),
            Some("host=db password=***")
        );
        assert_eq!(redact_checked("host=db password=x =y", true), None);
    }
}
