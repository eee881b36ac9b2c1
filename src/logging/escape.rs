//! String escaping that streams straight into the output buffer.
//!
//! Why: every string in a log line (message, target, keys, values) comes from code or from a
//! caller and may hold quotes, backslashes or control characters. Escaping must happen on the fly,
//! chunk by chunk, while `fmt::Arguments` and `Display` impls write, so a line never needs an
//! intermediate `String`. Each chunk is escaped completely before it is written, so even a
//! `Display` impl that fails half-way leaves a well-formed (truncated) string behind.
//!
//! Both escapers only ever replace ASCII bytes, so multi-byte UTF-8 sequences pass through
//! untouched and the output stays valid UTF-8.

use std::fmt;
use std::io;

use crate::json_string;

/// A `fmt::Write` adapter that JSON-escapes (RFC 8259 §7) everything written through it into an
/// `io::Write`, without the surrounding quotes.
///
/// `"` and `\` are backslash-escaped, `\b \f \n \r \t` use their short forms, every other
/// U+0000–U+001F becomes `\u00XX`. Everything else, non-ASCII included, is copied as is.
/// `fmt::Write` can only report `fmt::Error`, so the underlying `io::Error` is kept in
/// [`JsonEscaper::error`] for the caller to return.
pub(crate) struct JsonEscaper<'a, W: io::Write + ?Sized> {
    out: &'a mut W,
    pub(crate) error: Option<io::Error>,
}

impl<'a, W: io::Write + ?Sized> JsonEscaper<'a, W> {
    pub(crate) fn new(out: &'a mut W) -> Self {
        JsonEscaper { out, error: None }
    }

    /// Writes `s` escaped; the first I/O error is recorded and reported as `fmt::Error`.
    fn escape(&mut self, s: &str) -> io::Result<()> {
        json_string::write_escaped(&mut *self.out, s)
    }
}

impl<W: io::Write + ?Sized> fmt::Write for JsonEscaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.error.is_some() {
            return Err(fmt::Error);
        }
        self.escape(s).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

/// A `fmt::Write` adapter for the human-readable text format.
///
/// Keeps one record on one terminal line and stops terminal-control injection: every Unicode
/// control character (C0, DEL, C1, which includes ESC and CSI) is written as `\n`, `\r`, `\t`
/// or `\u{XX}`. With `quoted` set (for `key="value"`), `"` and `\` are backslash-escaped too.
pub(crate) struct TextEscaper<'a, W: io::Write + ?Sized> {
    out: &'a mut W,
    quoted: bool,
    pub(crate) error: Option<io::Error>,
}

impl<'a, W: io::Write + ?Sized> TextEscaper<'a, W> {
    pub(crate) fn new(out: &'a mut W, quoted: bool) -> Self {
        TextEscaper {
            out,
            quoted,
            error: None,
        }
    }

    fn escape(&mut self, s: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let special = c.is_control() || (self.quoted && (c == '"' || c == '\\'));
            if !special {
                continue;
            }
            self.out.write_all(&s.as_bytes()[start..i])?;
            match c {
                '\n' => self.out.write_all(b"\\n")?,
                '\r' => self.out.write_all(b"\\r")?,
                '\t' => self.out.write_all(b"\\t")?,
                '"' => self.out.write_all(b"\\\"")?,
                '\\' => self.out.write_all(b"\\\\")?,
                _ => write!(self.out, "\\u{{{:x}}}", u32::from(c))?,
            }
            start = i + c.len_utf8();
        }
        self.out.write_all(&s.as_bytes()[start..])
    }
}

impl<W: io::Write + ?Sized> fmt::Write for TextEscaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.error.is_some() {
            return Err(fmt::Error);
        }
        self.escape(s).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

/// Whether a text-format value must be quoted to stay one unambiguous `key=value` token.
pub(crate) fn text_needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn json(s: &str) -> String {
        let mut out = Vec::new();
        JsonEscaper::new(&mut out).write_str(s).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn text(s: &str, quoted: bool) -> String {
        let mut out = Vec::new();
        TextEscaper::new(&mut out, quoted).write_str(s).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The escaper byte by byte, as it was before the word-at-a-time scan.
    fn json_reference(s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out
    }

    /// Every ASCII byte at every position of a word and of a tail, and random
    /// mixes with multi-byte characters: the same output as byte by byte (the
    /// scan that lets a clean string through whole misses nothing).
    #[test]
    fn word_scan_escapes_exactly_what_the_bytewise_rule_does() {
        for b in 0u8..0x80 {
            for at in 0..19 {
                let mut s = "abcdefghijklmnopqr".to_owned();
                s.insert(at, char::from(b));
                assert_eq!(json(&s), json_reference(&s), "byte {b:#x} at {at}");
            }
        }
        let alphabet = [
            'a', 'Z', ' ', '"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}', 'é', '日', '🦀', '~', '!',
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((x >> (i % 60)) as usize + i * 7) % alphabet.len()])
                .collect();
            assert_eq!(json(&s), json_reference(&s), "{s:?}");
        }
    }

    #[test]
    fn json_short_forms_and_unicode_escapes() {
        assert_eq!(json("a\"b\\c"), r#"a\"b\\c"#);
        assert_eq!(json("\n\r\t\u{8}\u{c}"), r"\n\r\t\b\f");
        assert_eq!(json("\u{0}\u{1f}\u{1b}"), r"\u0000\u001f\u001b");
        assert_eq!(json("é日本🦀\u{7f}"), "é日本🦀\u{7f}");
    }

    #[test]
    fn text_escapes_controls_and_quotes_only_when_quoted() {
        assert_eq!(text("a\nb\u{1b}[31m\u{9b}", false), r"a\nb\u{1b}[31m\u{9b}");
        assert_eq!(text(r#"say "hi" \ é"#, false), r#"say "hi" \ é"#);
        assert_eq!(text(r#"say "hi" \ é"#, true), r#"say \"hi\" \\ é"#);
    }

    #[test]
    fn quoting_rule() {
        assert!(text_needs_quotes(""));
        assert!(text_needs_quotes("a b"));
        assert!(text_needs_quotes("a=b"));
        assert!(!text_needs_quotes("/api/v1/users/{id}"));
    }
}
