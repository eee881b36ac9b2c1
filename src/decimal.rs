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
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { buf, start }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

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
    }
}
