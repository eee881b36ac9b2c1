//! Byte sizes as operators write them: `1024`, `16KiB`, `1MiB`, `1GiB`, and
//! the decimal `16KB`, `1MB`, `1GB`.
//!
//! Why by hand: six units, whole numbers, overflow checks and a formatter
//! that prints a size back in its shortest exact form (`1MiB`, not
//! `1048576`) for `--print-config`.

use std::fmt;

/// Units, lower-cased for matching, with their size in bytes. Binary units
/// come first so that formatting prefers `1MiB` over `1048576`.
const BINARY: [(&str, u64); 4] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];
const DECIMAL: [(&str, u64); 4] = [
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
];

/// Why a size was refused; `Display` is a phrase that follows the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    Empty,
    Negative,
    Fraction,
    UnknownUnit(String),
    Malformed,
    Overflow,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Empty => f.write_str("is empty"),
            SizeError::Negative => f.write_str("is negative"),
            SizeError::Fraction => f.write_str("has a fraction (write 1536KiB rather than 1.5MiB)"),
            SizeError::UnknownUnit(unit) => write!(f, "has an unknown unit {unit:?}"),
            SizeError::Malformed => f.write_str("is not a size"),
            SizeError::Overflow => f.write_str("is too large"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses `<whole number>[unit]`: no unit or `B` = bytes; `KiB`, `MiB`,
/// `GiB`, `TiB` (powers of 1024); `KB`, `MB`, `GB`, `TB` (powers of 1000).
/// Units are case-insensitive; one space before the unit is allowed.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    if text.starts_with('-') {
        return Err(SizeError::Negative);
    }
    let digits_len = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits_len == 0 {
        return Err(SizeError::Malformed);
    }
    let (digits, unit) = text.split_at(digits_len);
    if unit.starts_with('.') {
        return Err(SizeError::Fraction);
    }
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    if !unit.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(SizeError::Malformed);
    }
    let multiplier = if unit.is_empty() || unit.eq_ignore_ascii_case("b") {
        1
    } else {
        BINARY
            .iter()
            .chain(DECIMAL.iter())
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(_, bytes)| *bytes)
            .ok_or_else(|| SizeError::UnknownUnit(unit.to_owned()))?
    };
    let count: u64 = digits.parse().map_err(|_| SizeError::Overflow)?;
    count.checked_mul(multiplier).ok_or(SizeError::Overflow)
}

/// Formats a size in its shortest exact form: the largest binary unit that
/// divides it (`16KiB`, `1MiB`), else the largest decimal one (`1500KB`),
/// else plain bytes (`1500`).
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_owned();
    }
    BINARY
        .iter()
        .chain(DECIMAL.iter())
        .find(|(_, unit)| bytes.is_multiple_of(*unit))
        .map(|(name, unit)| format!("{}{name}", bytes / unit))
        .unwrap_or_else(|| bytes.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_binary_and_decimal_units() {
        let cases = [
            ("0", 0),
            ("1024", 1024),
            ("512B", 512),
            ("16KiB", 16 * 1024),
            ("16kib", 16 * 1024),
            ("16 KiB", 16 * 1024),
            ("1MiB", 1 << 20),
            ("1GiB", 1 << 30),
            ("2TiB", 2 << 40),
            ("16KB", 16_000),
            ("16kB", 16_000),
            ("1MB", 1_000_000),
            ("1GB", 1_000_000_000),
            ("1TB", 1_000_000_000_000),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn refuses_malformed_sizes() {
        let cases = [
            ("", SizeError::Empty),
            ("-1", SizeError::Negative),
            ("-1KiB", SizeError::Negative),
            ("1.5MiB", SizeError::Fraction),
            ("KiB", SizeError::Malformed),
            ("abc", SizeError::Malformed),
            (" 1KiB", SizeError::Malformed),
            ("1  KiB", SizeError::Malformed),
            ("1KiB ", SizeError::Malformed),
            ("1Ki-B", SizeError::Malformed),
            ("1K", SizeError::UnknownUnit("K".into())),
            ("1M", SizeError::UnknownUnit("M".into())),
            ("1bytes", SizeError::UnknownUnit("bytes".into())),
            ("18446744073709551616", SizeError::Overflow),
            ("17179869184GiB", SizeError::Overflow),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn formats_in_the_shortest_exact_form() {
        let cases = [
            (0, "0"),
            (1, "1"),
            (1024, "1KiB"),
            (16 * 1024, "16KiB"),
            (1 << 20, "1MiB"),
            (1536 * 1024, "1536KiB"),
            (1 << 30, "1GiB"),
            (1_000, "1KB"),
            (1_000_000, "1MB"),
            (1_500, "1500"),
            (u64::MAX, "18446744073709551615"),
        ];
        for (bytes, text) in cases {
            assert_eq!(format_size(bytes), text);
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for bytes in [0, 1, 1023, 1024, 1_000, 1_048_577, 1 << 30, u64::MAX] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
    }
}
