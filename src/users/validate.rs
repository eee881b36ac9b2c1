//! Input rules for users: pure functions, no I/O, all errors at once.
//!
//! Every invalid field is reported in one answer (`[{field, message}]`, 422)
//! so a client fixes a form in one round. The same rules apply to create and
//! patch; what is stored is the normalised value, so equal inputs are equal
//! rows.
//!
//! # Names: a documented subset of PRECIS (RFC 8264/8266)
//!
//! The display-name rules follow the PRECIS Nickname profile (RFC 8266),
//! with NFC where it says NFKC:
//!
//! 1. Non-ASCII spaces (general category Zs, e.g. U+00A0, U+3000) become
//!    U+0020; leading and trailing spaces are removed and runs of spaces
//!    collapse to one (8266 §2.2 rules 1, 3).
//! 2. NFC normalisation (canonical equivalence: `é` typed as `e` + U+0301 is
//!    stored as U+00E9). Not NFKC, which would rewrite what people typed
//!    (`ﬁ` → `fi`, `①` → `1`, full-width forms) for no gain in a display name.
//! 3. Refused anywhere (422): controls (Cc: NUL, tab, newline, DEL, C1);
//!    format characters (Cf) — which include the invisible U+200B ZERO WIDTH
//!    SPACE, U+2060 WORD JOINER, U+FEFF, U+00AD SOFT HYPHEN, the bidi marks
//!    (U+200E, U+200F, U+061C), embeddings and overrides (U+202A–U+202E) and
//!    isolates (U+2066–U+2069), and tag characters — except U+200C ZWNJ and
//!    U+200D ZWJ between two visible characters (Persian and Indic names,
//!    emoji sequences: a simplified PRECIS CONTEXTJ); line and paragraph
//!    separators (U+2028, U+2029); private-use and unassigned code points
//!    (Co, Cn, including noncharacters); the Hangul fillers U+115F, U+1160,
//!    U+3164, U+FFA0 and U+034F COMBINING GRAPHEME JOINER, which render as
//!    nothing although they are not Cf.
//! 4. A combining mark may not come first, and the name must contain at least
//!    one letter, digit, punctuation mark or symbol: no name made only of
//!    spaces, joiners or marks.
//! 5. 1–200 characters after the steps above.
//!
//! # E-mail addresses
//!
//! Trimmed; the local part is lower-cased (case-insensitive uniqueness is the
//! product rule) and NFC-normalised, 1–64 bytes of RFC 5322 atext or Unicode
//! letters/digits with single inner dots. The domain goes through IDNA
//! (UTS 46 ToASCII, nontransitional, STD3 rules, hyphens not first or last,
//! DNS lengths verified), which maps case and width and validates every
//! label, then back to Unicode (ToUnicode): **the stored form is the
//! canonical Unicode one**, so `u@bücher.de`, `u@BÜCHER.de` and
//! `u@xn--bcher-kva.de` are one mailbox, stored and shown as `u@bücher.de`
//! (the form people type and read; the local part may be Unicode anyway).
//! At least two labels, the last not numeric; 254 bytes in total.
//! Deliverability is not checked.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::Serialize;
use unicode_normalization::{is_nfc, UnicodeNormalization};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

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

/// Why a value breaks a rule: the sentence a client sees for its field in
/// a 422's `errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleBroken(String);

impl From<&'static str> for RuleBroken {
    fn from(message: &'static str) -> Self {
        RuleBroken(message.to_owned())
    }
}

impl std::fmt::Display for RuleBroken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuleBroken {}

fn required(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: Option<&str>,
    check: fn(&str) -> Result<String, RuleBroken>,
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
    check: fn(&str) -> Result<String, RuleBroken>,
) -> Option<String> {
    match raw.map(check) {
        Some(Ok(v)) => Some(v),
        Some(Err(RuleBroken(m))) => {
            errors.push(FieldError::new(field, m));
            None
        }
        None => None,
    }
}

/// A normalised name, or why not (rules: the module docs).
pub fn name(raw: &str) -> Result<String, RuleBroken> {
    // Rule 1: spaces mapped, trimmed, collapsed; rule 2: NFC.
    let mut spaced = String::with_capacity(raw.len());
    for c in raw.chars() {
        // ASCII's only Zs is U+0020 itself: no table lookup for it.
        let c = if !c.is_ascii() && c.general_category() == GeneralCategory::SpaceSeparator {
            ' '
        } else {
            c
        };
        if c == ' ' && (spaced.is_empty() || spaced.ends_with(' ')) {
            continue;
        }
        spaced.push(c);
    }
    if spaced.ends_with(' ') {
        spaced.pop();
    }
    let name: String = if is_nfc(&spaced) {
        spaced
    } else {
        spaced.nfc().collect()
    };
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(RuleBroken(format!(
            "must be at most {NAME_MAX_CHARS} characters"
        )));
    }
    check_name_chars(&name)?;
    Ok(name)
}

/// Rules 3 and 4 on a mapped, NFC name.
fn check_name_chars(name: &str) -> Result<(), RuleBroken> {
    let shows = |d: Option<char>| d.is_some_and(|d| d != ' ' && d != ZWNJ && d != ZWJ);
    let mut prev: Option<char> = None;
    let mut chars = name.chars().peekable();
    let mut visible = false;
    while let Some(c) = chars.next() {
        // ASCII without the tables: controls refused, the rest is a space
        // or visible (letters, digits, punctuation, symbols).
        if c.is_ascii() {
            if c.is_ascii_control() {
                return Err(
                    "must not contain control characters (such as a newline or tab)".into(),
                );
            }
            visible |= c != ' ';
            prev = Some(c);
            continue;
        }
        let at = u32::from(c);
        let category = c.general_category();
        match category {
            GeneralCategory::Control => {
                return Err("must not contain control characters (such as a newline or tab)".into())
            }
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
                return Err("must not contain line or paragraph separators".into())
            }
            GeneralCategory::Format
                if (c == ZWNJ || c == ZWJ) && (!shows(prev) || !shows(chars.peek().copied())) =>
            {
                return Err(RuleBroken(format!(
                    "may contain U+{at:04X} only between two visible characters"
                )));
            }
            GeneralCategory::Format if c == ZWNJ || c == ZWJ => {}
            GeneralCategory::Format => {
                return Err(RuleBroken(format!(
                "must not contain invisible formatting or text-direction characters (U+{at:04X})"
            )))
            }
            GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::Surrogate => {
                return Err(RuleBroken(format!(
                    "must not contain private-use or unassigned code points (U+{at:04X})"
                )))
            }
            _ if INVISIBLE_LETTERS.contains(&c) => {
                return Err(RuleBroken(format!(
                    "must not contain characters that render as nothing (U+{at:04X})"
                )))
            }
            _ => {}
        }
        use GeneralCategory as G;
        match category {
            G::NonspacingMark | G::SpacingMark | G::EnclosingMark if prev.is_none() => {
                return Err("must not start with a combining mark".into())
            }
            G::NonspacingMark | G::SpacingMark | G::EnclosingMark => {}
            G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::Control
            | G::Format
            | G::Surrogate
            | G::PrivateUse
            | G::Unassigned => {}
            // Letters, numbers, punctuation, symbols.
            _ => visible = true,
        }
        prev = Some(c);
    }
    if !visible {
        return Err("must contain at least one visible character".into());
    }
    Ok(())
}

const ZWNJ: char = '\u{200C}';
const ZWJ: char = '\u{200D}';

/// Default-ignorable code points that are not Cf (so the category check does
/// not catch them) and render as nothing: Hangul fillers and the CGJ.
const INVISIBLE_LETTERS: [char; 5] = ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{034F}'];

/// A normalised e-mail address, or why not (rules: the module docs).
pub fn email(raw: &str) -> Result<String, RuleBroken> {
    let email = raw.trim();
    if email.is_empty() {
        return Err("must not be empty".into());
    }
    // Bounded before any work that grows with it (IDNA mapping may grow or
    // shrink it; the final form is checked again below).
    if email.len() > 4 * EMAIL_MAX_BYTES {
        return Err(RuleBroken(format!(
            "must be at most {EMAIL_MAX_BYTES} bytes"
        )));
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("must contain exactly one @".into());
    };
    // `str::to_lowercase`, not per char: a final Σ becomes ς, as stored so far.
    let mut lower = local.to_lowercase();
    lower.reserve(domain.len() + 1);
    let local: String = if is_nfc(&lower) {
        lower
    } else {
        lower.nfc().collect()
    };
    check_local(&local)?;
    // The address is built in the local part's buffer (room reserved above
    // for an ASCII domain), not by `format!` from two more strings.
    let mut email = local;
    email.push('@');
    push_canonical_domain(&mut email, domain)?;
    if email.len() > EMAIL_MAX_BYTES {
        return Err(RuleBroken(format!(
            "must be at most {EMAIL_MAX_BYTES} bytes"
        )));
    }
    Ok(email)
}

fn check_local(local: &str) -> Result<(), RuleBroken> {
    if local.is_empty() {
        return Err("must have a part before the @".into());
    }
    if local.len() > LOCAL_MAX_BYTES {
        return Err(RuleBroken(format!(
            "the part before the @ must be at most {LOCAL_MAX_BYTES} bytes"
        )));
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

/// The domain through IDNA: validated, mapped, and appended to `out` in
/// canonical Unicode form.
fn push_canonical_domain(out: &mut String, domain: &str) -> Result<(), RuleBroken> {
    if domain.is_empty() {
        return Err("must have a domain after the @".into());
    }
    let uts46 = Uts46::new();
    let ascii = uts46
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .map_err(|_| {
            RuleBroken::from(
                "the domain must be a valid domain name: dot-separated labels of letters, \
                 digits and inner hyphens, each at most 63 bytes in its ASCII form",
            )
        })?;
    if !ascii.contains('.') {
        return Err("the domain must contain a dot".into());
    }
    if ascii
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the domain must not end in a numeric label".into());
    }
    let (unicode, result) = uts46.to_unicode(
        ascii.as_bytes(),
        AsciiDenyList::STD3,
        Hyphens::CheckFirstLast,
    );
    match result {
        Ok(()) => {
            out.push_str(&unicode);
            Ok(())
        }
        // ToASCII succeeded, so its output decodes; an error all the same.
        Err(_) => Err("the domain must be a valid domain name".into()),
    }
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

    /// One mailbox, one stored form: IDNA (UTS 46) maps every spelling of a
    /// domain to its canonical Unicode form; the local part is lower-cased
    /// and NFC.
    #[test]
    fn idna_spellings_of_a_domain_are_one_mailbox() {
        let table = [
            ("u@bücher.de", "u@bücher.de"),
            ("u@xn--bcher-kva.de", "u@bücher.de"),
            ("u@XN--BCHER-KVA.DE", "u@bücher.de"),
            ("u@BÜCHER.de", "u@bücher.de"),
            ("u@bu\u{308}cher.de", "u@bücher.de"), // decomposed ü
            ("u@ｂücher．de", "u@bücher.de"),      // full-width letters and dot
            ("U@Example.COM", "u@example.com"),
            ("Jose\u{301}@example.com", "josé@example.com"), // local part NFC
            ("ΟΔΟΣ@example.gr", "οδος@example.gr"),          // final sigma, as str::to_lowercase
            ("u@faß.de", "u@faß.de"),                        // nontransitional: ß kept
            ("u@xn--mnchen-3ya.de", "u@münchen.de"),
            ("u@例え.jp", "u@例え.jp"),
            ("u@xn--r8jz45g.jp", "u@例え.jp"),
            // UTS 46 maps ignorables (U+200B, soft hyphen) to nothing.
            ("u@\u{200b}exam\u{ad}ple.com", "u@example.com"),
        ];
        for (raw, want) in table {
            assert_eq!(email(raw).as_deref(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn invalid_idna_domains_are_refused() {
        for bad in [
            "u@xn--zz.de",           // not valid Punycode
            "u@xn--a.de",            // decodes to nothing valid
            "u@b\u{fc}cher_x.de",    // underscore (STD3)
            "u@bücher.de.",          // trailing root dot
            "u@exa\u{202e}mple.com", // bidi override in a label
            "u@-bücher.de",
            "u@bücher-.de",
            "u@localhost",
            "u@1.2",
        ] {
            assert!(email(bad).is_err(), "{bad:?} accepted: {:?}", email(bad));
        }
        let long_label = format!("u@{}.de", "ü".repeat(60));
        assert!(
            email(&long_label).is_err(),
            "label over 63 bytes in ASCII form"
        );
    }

    /// The name rules (module docs), as a table: input → stored form or refusal.
    #[test]
    fn names_follow_the_precis_subset() {
        let accepted = [
            ("  Ada  ", "Ada"),
            ("Ada\u{a0}\u{a0}King", "Ada King"), // NBSP mapped, run collapsed
            ("\u{3000}李小龍\u{3000}", "李小龍"), // ideographic spaces trimmed
            ("Jose\u{301}", "José"),             // NFC
            ("ﬁ ①", "ﬁ ①"),                      // not NFKC
            ("می\u{200c}خواهم", "می\u{200c}خواهم"), // ZWNJ inside a Persian word
            ("👨\u{200d}👩\u{200d}👧", "👨\u{200d}👩\u{200d}👧"), // ZWJ emoji sequence
            ("❤\u{fe0f}", "❤\u{fe0f}"),          // variation selector after a base
            ("!!!", "!!!"),
            ("😀", "😀"),
            ("O'Brien-Smith Jr.", "O'Brien-Smith Jr."),
        ];
        for (raw, want) in accepted {
            assert_eq!(name(raw).as_deref(), Ok(want), "{raw:?}");
        }
        let refused = [
            "",
            "   ",
            "\u{200b}", // zero width space only
            "\u{200b}\u{200b}\u{200b}",
            "Ada\u{200b}",     // ZWSP anywhere
            "\u{2060}",        // word joiner
            "\u{feff}Ada",     // BOM
            "Ada\u{ad}",       // soft hyphen
            "\u{202e}gnp.exe", // right-to-left override
            "a\u{202a}b",
            "a\u{202b}b",
            "a\u{202c}b",
            "a\u{202d}b",
            "a\u{2066}b",
            "a\u{2067}b",
            "a\u{2068}b",
            "a\u{2069}b", // isolates
            "a\u{200e}b",
            "a\u{200f}b",
            "a\u{61c}b", // direction marks
            "line\u{2028}sep",
            "para\u{2029}sep",
            "line\nbreak",
            "tab\there",
            "a\u{0}b",
            "del\u{7f}",
            "c1\u{85}",
            "\u{e000}private",
            "\u{fdd0}nonchar",
            "\u{10ffff}",
            "\u{3164}",
            "\u{115f}\u{1160}",
            "\u{ffa0}",
            "a\u{34f}b", // fillers, CGJ
            "\u{200d}",
            "\u{200c}Ada",
            "Ada\u{200d}",
            "a \u{200d} b",       // stray joiners
            "\u{301}Ada",         // combining mark first
            "\u{e0041}\u{e0042}", // tag characters
        ];
        for raw in refused {
            assert!(name(raw).is_err(), "{raw:?} accepted as {:?}", name(raw));
        }
        assert!(name(&"é".repeat(200)).is_ok(), "200 characters, 400 bytes");
        assert!(
            name(&"e\u{301}".repeat(200)).is_ok(),
            "400 chars, 200 after NFC"
        );
        assert!(name(&"x".repeat(201)).is_err());
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
