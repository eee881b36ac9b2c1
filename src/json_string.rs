//! JSON string text (RFC 8259 §7), written straight into a buffer.
//!
//! Why: strings reach JSON output in two places that run for every request —
//! the log line's values and the problem body of an error answer — and both
//! are mostly plain text. One escaper, shared: a string that needs no escape
//! is found eight bytes at a time and written whole, so the common case costs
//! a scan and one copy. `"` and `\` are backslash-escaped, `\b \f \n \r \t`
//! use their short forms, every other U+0000–U+001F becomes `\u00XX`, and
//! everything else, non-ASCII included, is copied as is — the same bytes
//! `serde_json` writes.

use std::io;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` to `out` as a JSON string, quotes included.
pub fn push_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Writing into a Vec cannot fail.
    let _ = write_escaped(out, s);
    out.push(b'"');
}

/// Writes `s` JSON-escaped to `out`, without the surrounding quotes.
pub fn write_escaped<W: io::Write + ?Sized>(out: &mut W, s: &str) -> io::Result<()> {
    let bytes = s.as_bytes();
    // Nearly every string of a log line needs no escape: one scan, one write.
    if !needs_json_escape(bytes) {
        return out.write_all(bytes);
    }
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let kind = JSON_ESCAPE[usize::from(b)];
        i += 1;
        if kind == 0 {
            continue;
        }
        if start < i - 1 {
            out.write_all(&bytes[start..i - 1])?;
        }
        start = i;
        if kind == b'u' {
            let u = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            out.write_all(&u)?;
        } else {
            out.write_all(&[b'\\', kind])?;
        }
    }
    if start < bytes.len() {
        out.write_all(&bytes[start..])?;
    }
    Ok(())
}

/// Whether any byte of `bytes` is one [`JSON_ESCAPE`] escapes: eight bytes at a time, and
/// the bytes after the last whole word in one more word test — the last eight bytes again
/// (overlapping is harmless: the question is whether *some* byte matches), or for a string
/// shorter than a word, its bytes read as two overlapping halves (or its first, middle and
/// last byte) padded with spaces, which are never escaped. A log line tests about fifteen
/// short strings; byte-by-byte tails were most of their cost.
fn needs_json_escape(bytes: &[u8]) -> bool {
    let n = bytes.len();
    if n >= 8 {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            if word_needs_json_escape(load_u64(word)) {
                return true;
            }
        }
        return !words.remainder().is_empty() && word_needs_json_escape(load_u64(&bytes[n - 8..]));
    }
    const SPACES: u64 = 0x2020_2020_2020_2020;
    let w = if n >= 4 {
        u64::from(load_u32(&bytes[..4])) | u64::from(load_u32(&bytes[n - 4..])) << 32
    } else if n > 0 {
        let (a, b, c) = (bytes[0], bytes[n / 2], bytes[n - 1]);
        u64::from_le_bytes([a, b, c, b' ', b' ', b' ', b' ', b' '])
    } else {
        SPACES
    };
    word_needs_json_escape(w)
}

/// The first eight bytes of `b` (at least eight long) as a little-endian word.
fn load_u64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// The first four bytes of `b` (at least four long) as a little-endian word.
fn load_u32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w)
}

/// Whether any of the eight bytes of `w` is one [`JSON_ESCAPE`] escapes: a control byte
/// (below 0x20), `"` or `\\`. The classic word tests (Hacker's Delight, "find the first 0-byte"):
/// `has_less(x, n)` is non-zero iff some byte of `x` is below `n` (n ≤ 128), `has_zero` iff
/// some byte is 0; a borrow can only spread from a byte that already answers yes, so the tests
/// are exact as yes/no answers. Bytes of 0x80 and up (UTF-8 beyond ASCII) never match.
fn word_needs_json_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_less = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let has_zero = |x: u64| has_less(x, 1);
    (has_less(w, 0x20)
        | has_zero(w ^ (ONES * u64::from(b'"')))
        | has_zero(w ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// For each byte: 0 if it is copied as is, else the letter after the backslash (`u` for the
/// `\u00XX` form). Only ASCII bytes are ever escaped.
static JSON_ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The word tests agree with the table for every escaped byte at every position of
    /// strings of 0 to 24 bytes (short ones, whole words, words and a tail).
    #[test]
    fn the_scan_finds_every_escaped_byte_wherever_it_is() {
        for len in 0..=24 {
            let plain = vec![b'a'; len];
            assert!(!needs_json_escape(&plain), "len {len}");
            for at in 0..len {
                for b in 0u8..=255 {
                    let mut s = plain.clone();
                    s[at] = b;
                    let expected = JSON_ESCAPE[usize::from(b)] != 0;
                    assert_eq!(
                        needs_json_escape(&s),
                        expected,
                        "len {len}, byte {b:#04x} at {at}"
                    );
                }
            }
        }
    }

    /// The bytes `serde_json` writes for the same string, for every ASCII
    /// character at every position of a word and of a tail, and multi-byte
    /// characters around them: the two writers of JSON in this crate agree.
    #[test]
    fn push_quoted_writes_what_serde_json_writes() {
        let mut cases: Vec<String> =
            vec![String::new(), "é☃😀".into(), "\u{7f}\u{80}\u{2028}".into()];
        for c in (0u8..0x80).map(char::from) {
            for at in 0..10 {
                let mut s: String = "abcdefghi".chars().take(at).collect();
                s.push(c);
                s.push_str("é-tail");
                cases.push(s);
            }
        }
        for s in cases {
            let mut ours = Vec::new();
            push_quoted(&mut ours, &s);
            let theirs = serde_json::to_vec(&s).unwrap();
            assert_eq!(ours, theirs, "{s:?}");
        }
    }
}
