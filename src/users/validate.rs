//! Input rules for users: pure functions, no I/O, all errors at once.
//!
//! Every invalid field is reported in one answer (`[{field, message}]`, 422)
//! so a client fixes a form in one round. Names are trimmed and limited to
//! 1–200 characters without control characters (PostgreSQL rejects NUL, and
//! newlines in a display name are a bug). E-mails are trimmed and lower-cased
//! (the whole address: case-insensitive uniqueness is the product rule), then
//! checked for shape: one `@`, a local part of 1–64 bytes of RFC 5322 atext
//! or Unicode letters/digits with single inner dots, a domain of at least two
//! dot-separated labels (1–63 bytes, letters/digits/hyphens, no hyphen at an
//! end, TLD not numeric), 254 bytes in total. Deliverability is not checked.

use serde::Serialize;

use super::model::{CreateUser, NewUser, PatchUser, UserChanges};

/// The longest name, in characters.
pub const NAME_MAX_CHARS: usize = 200;
/// The longest e-mail address, in bytes (RFC 5321 path limit).
pub const EMAIL_MAX_BYTES: usize = 254;
/// The longest local part, in bytes.
pub const LOCAL_MAX_BYTES: usize = 64;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The JSON field (or query parameter / header) at fault.
    pub field: String,
    /// What is expected, for a human.
    pub message: String,
}

impl FieldError {
    /// Convenience constructor.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Validates a create request.
pub fn new_user(input: &CreateUser) -> Result<NewUser, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = required(&mut errors, "name", input.name.as_deref(), name);
    let email = required(&mut errors, "email", input.email.as_deref(), email);
    match (name, email) {
        (Some(name), Some(email)) if errors.is_empty() => Ok(NewUser { name, email }),
        _ => Err(errors),
    }
}

/// Validates a patch request (at least one field).
pub fn changes(input: &PatchUser) -> Result<UserChanges, Vec<FieldError>> {
    if input.name.is_none() && input.email.is_none() {
        return Err(vec![FieldError::new(
            "body",
            "at least one of name, email is required",
        )]);
    }
    let mut errors = Vec::new();
    let name = optional(&mut errors, "name", input.name.as_deref(), name);
    let email = optional(&mut errors, "email", input.email.as_deref(), email);
    if errors.is_empty() {
        Ok(UserChanges { name, email })
    } else {
        Err(errors)
    }
}

fn required(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: Option<&str>,
    check: fn(&str) -> Result<String, String>,
) -> Option<String> {
    match raw {
        None => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Some(v) => optional(errors, field, Some(v), check),
    }
}

fn optional(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: Option<&str>,
    check: fn(&str) -> Result<String, String>,
) -> Option<String> {
    match raw.map(check) {
        Some(Ok(v)) => Some(v),
        Some(Err(m)) => {
            errors.push(FieldError::new(field, m));
            None
        }
        None => None,
    }
}

/// A trimmed name, or why not.
pub fn name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(format!("must be at most {NAME_MAX_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(name.to_owned())
}

/// A normalised e-mail address, or why not.
pub fn email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("must not be empty".into());
    }
    if email.len() > EMAIL_MAX_BYTES {
        return Err(format!("must be at most {EMAIL_MAX_BYTES} bytes"));
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("must contain exactly one @".into());
    };
    check_local(local)?;
    check_domain(domain)?;
    Ok(email)
}

fn check_local(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("must have a part before the @".into());
    }
    if local.len() > LOCAL_MAX_BYTES {
        return Err(format!(
            "the part before the @ must be at most {LOCAL_MAX_BYTES} bytes"
        ));
    }
    if local.split('.').any(str::is_empty) {
        return Err(
            "the part before the @ must not start or end with a dot or contain two dots in a row"
                .into(),
        );
    }
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+/=?^_`{|}~-.".contains(c)
            || (!c.is_ascii() && c.is_alphanumeric())
    };
    if !local.chars().all(atext) {
        return Err("the part before the @ contains a character that is not allowed".into());
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain must contain a dot".into());
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-');
        if !ok {
            return Err(
                "the domain must be dot-separated labels of letters, digits and inner hyphens"
                    .into(),
            );
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("the domain must not end in a numeric label".into());
    }
    Ok(())
}

/// Parses a path id: a positive decimal integer in its one canonical form.
pub fn parse_id(raw: &str) -> Option<i64> {
    canonical_integer(raw).filter(|id| *id > 0)
}

/// A non-negative decimal integer written the one way it prints: digits
/// only, no sign, no leading zero (`0` itself aside), so that `06`, `+6` and
/// `%2b6` (decoded) are all refused rather than some of them meaning 6.
/// Shared by every id, `limit` and `after` the API reads.
pub fn canonical_integer<T: std::str::FromStr>(raw: &str) -> Option<T> {
    let digits_only = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = raw.len() > 1 && raw.starts_with('0');
    if !digits_only || leading_zero {
        return None;
    }
    raw.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_have_one_canonical_form() {
        for good in ["1", "6", "10", "9223372036854775807"] {
            assert!(parse_id(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "0",
            "06",
            "00",
            "+5",
            "-5",
            " 5",
            "5 ",
            "1e3",
            "0x5",
            "%2b5",
            "9223372036854775808",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
        assert_eq!(canonical_integer::<u32>("0"), Some(0));
        assert_eq!(canonical_integer::<u32>("+5"), None);
        assert_eq!(canonical_integer::<u32>("05"), None);
    }

    fn create(name: Option<&str>, email: Option<&str>) -> CreateUser {
        CreateUser {
            name: name.map(str::to_owned),
            email: email.map(str::to_owned),
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  Ada  ").as_deref(), Ok("Ada"));
        assert!(name("   ").is_err());
        assert!(name("").is_err());
        assert!(name(&"é".repeat(200)).is_ok(), "200 characters, 400 bytes");
        assert!(name(&"x".repeat(201)).is_err());
        assert!(name("a\u{0}b").is_err());
        assert!(name("line\nbreak").is_err());
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            email("  Ada.Lovelace+x@Example.COM ").as_deref(),
            Ok("ada.lovelace+x@example.com")
        );
        assert_eq!(email("josé@bücher.de").as_deref(), Ok("josé@bücher.de"));
    }

    #[test]
    fn invalid_emails_are_rejected() {
        let bad = [
            "",
            "plain",
            "a@b",
            "@example.com",
            "a@@example.com",
            "a@b@example.com",
            "a b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a..b@example.com",
            "a@-example.com",
            "a@example-.com",
            "a@example..com",
            "a@example.com.",
            "a@127.0.0.1",
            "a(b)@example.com",
            "a@exa_mple.com",
        ];
        for b in bad {
            assert!(email(b).is_err(), "{b:?} accepted");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(email(&long_local).is_err());
        let ok_local = format!("{}@example.com", "a".repeat(64));
        assert!(email(&ok_local).is_ok());
        let long_label = format!("a@{}.com", "b".repeat(64));
        assert!(email(&long_label).is_err());
        let long_total = format!("a@{}.com", vec!["b".repeat(60); 5].join("."));
        assert!(long_total.len() > 254);
        assert!(email(&long_total).is_err());
    }

    #[test]
    fn every_invalid_field_is_listed_at_once() {
        let errs = new_user(&create(None, Some("nope"))).expect_err("invalid");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "email"]);
        assert_eq!(errs[0].message, "is required");
        let errs = new_user(&create(Some(" "), None)).expect_err("invalid");
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn valid_create_is_normalised() {
        let u = new_user(&create(Some(" Ada "), Some("ADA@Example.com"))).expect("valid");
        assert_eq!(u.name, "Ada");
        assert_eq!(u.email, "ada@example.com");
    }

    #[test]
    fn patch_needs_a_field_and_validates_each() {
        let errs = changes(&PatchUser::default()).expect_err("empty");
        assert_eq!(errs[0].field, "body");
        let c = changes(&PatchUser {
            name: None,
            email: Some(" X@Y.io".into()),
        })
        .expect("valid");
        assert_eq!(c.email.as_deref(), Some("x@y.io"));
        assert_eq!(c.name, None);
        let errs = changes(&PatchUser {
            name: Some("".into()),
            email: Some("bad".into()),
        })
        .expect_err("invalid");
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn ids_are_positive_plain_integers() {
        assert_eq!(parse_id("42"), Some(42));
        for bad in [
            "0",
            "-1",
            "+1",
            " 1",
            "1.0",
            "",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
