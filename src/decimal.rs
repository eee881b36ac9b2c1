//! Unsigned integers as decimal text, without `core::fmt` and without a
//! heap allocation.
//!
//! Why: numbers are written on every request — a log line's `status` and
//! `bytes`, the client's port, `duration_ms`, a problem body's `status` —
//! and `fmt`'s machinery costs several times more per number than the
//! division loop here. One place for that loop.

/// `n` in decimal, in a buffer of its own.
pub struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn new(mut n: u64) -> Decimal {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        // Two digits per division: a port or a status is two or three steps.
        while n >= 100 {
            start -= 2;
            buf[start..start + 2].copy_from_slice(&two_digits((n % 100) as u32));
            n /= 100;
        }
        if n >= 10 {
            start -= 2;
            buf[start..start + 2].copy_from_slice(&two_digits(n as u32));
        } else {
            start -= 1;
            buf[start] = b'0' + n as u8;
        }
        Decimal { buf, start }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// `n % 100` as two decimal digits ("07" for 7), from a table: what every
/// writer of numbers and timestamps here builds on.
pub fn two_digits(n: u32) -> [u8; 2] {
    DIGIT_PAIRS[(n % 100) as usize]
}

/// "00" to "99".
static DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::Decimal;

    #[test]
    fn the_same_text_as_display() {
        let mut n: u64 = 1;
        for k in 0..=u64::MAX.ilog10() {
            for v in [n - 1, n, n + 1, n.saturating_mul(7)] {
                assert_eq!(
                    Decimal::new(v).as_bytes(),
                    v.to_string().as_bytes(),
                    "10^{k}"
                );
            }
            n = n.saturating_mul(10);
        }
        assert_eq!(
            Decimal::new(u64::MAX).as_bytes(),
            u64::MAX.to_string().as_bytes()
        );
        for v in 0..100_000u64 {
            assert_eq!(Decimal::new(v).as_bytes(), v.to_string().as_bytes());
        }
    }
}
