//! The JSON line format: one object per line, fields in a fixed order (see the parent module).
//!
//! Every string goes through [`JsonEscaper`] on its way into `out`; numbers and booleans are
//! written as JSON literals; a non-finite float becomes the string `"NaN"`, `"inf"` or `"-inf"`
//! (JSON has no literal for them, and a string keeps the information `null` would lose).

use std::fmt::Write as _;
use std::io;
use std::time::SystemTime;

use log::kv::{self, Key, Value, VisitSource, VisitValue};
use log::Record;

use super::{
    level_name, write_args, write_guarded, write_u128, write_u64, Seen, BUILTIN,
    BUILTIN_WITH_CONTEXT,
};
use crate::logging::context::{self, hex, RequestContext};
use crate::logging::escape::JsonEscaper;
use crate::rfc3339::Rfc3339Millis;

/// Writes `record` as one JSON object and a `\n` into `out`, stamped with `now`.
///
/// Adds the thread's request context when one is entered. Allocates nothing itself; the only
/// error is one from `out`.
pub fn write_json<W: io::Write + ?Sized>(
    out: &mut W,
    now: SystemTime,
    record: &Record<'_>,
) -> io::Result<()> {
    out.write_all(b"{\"time\":\"")?;
    out.write_all(Rfc3339Millis::new(now).as_bytes())?;
    out.write_all(b"\",\"level\":\"")?;
    out.write_all(level_name(record.level()).as_bytes())?;
    out.write_all(b"\",\"msg\":\"")?;
    {
        let mut esc = JsonEscaper::new(out);
        write_args(&mut esc, record.args());
        done(esc)?;
    }
    out.write_all(b"\",\"target\":")?;
    string(out, record.target())?;

    let mut builtin = BUILTIN;
    let mut written = Ok(());
    context::with_current(|ctx| {
        if let Some(ctx) = ctx {
            builtin = BUILTIN_WITH_CONTEXT;
            written = write_context(out, ctx);
        }
    });
    written?;

    let mut fields = Fields {
        out: &mut *out,
        seen: Seen::new(builtin),
        error: None,
    };
    // The only error our visitor returns is an I/O error it keeps; a source's own error just
    // ends the key/values early.
    let _ = record.key_values().visit(&mut fields);
    if let Some(e) = fields.error {
        return Err(e);
    }
    out.write_all(b"}\n")
}

/// Writes the request context's fields, each after a comma.
fn write_context<W: io::Write + ?Sized>(out: &mut W, ctx: &RequestContext) -> io::Result<()> {
    out.write_all(b",\"request_id\":")?;
    string(out, ctx.request_id.as_str())?;
    if let Some(id) = ctx.trace_id {
        out.write_all(b",\"trace_id\":\"")?;
        out.write_all(&hex::<16, 32>(&id))?;
        out.write_all(b"\"")?;
    }
    if let Some(id) = ctx.span_id {
        out.write_all(b",\"span_id\":\"")?;
        out.write_all(&hex::<8, 16>(&id))?;
        out.write_all(b"\"")?;
    }
    Ok(())
}

/// Writes `s` as a quoted, escaped JSON string.
fn string<W: io::Write + ?Sized>(out: &mut W, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    let mut esc = JsonEscaper::new(out);
    let _ = esc.write_str(s);
    done(esc)?;
    out.write_all(b"\"")
}

/// The I/O error an escaper kept, if any.
fn done<W: io::Write + ?Sized>(esc: JsonEscaper<'_, W>) -> io::Result<()> {
    match esc.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Writes each key/value as `,"key":value`.
struct Fields<'a, 'kvs, W: io::Write + ?Sized> {
    out: &'a mut W,
    seen: Seen<'kvs>,
    error: Option<io::Error>,
}

impl<'kvs, W: io::Write + ?Sized> VisitSource<'kvs> for Fields<'_, 'kvs, W> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        if !self.seen.first(&key) {
            return Ok(());
        }
        let result = (|| {
            self.out.write_all(b",")?;
            string(self.out, key.as_str())?;
            self.out.write_all(b":")?;
            let mut v = JsonValue {
                out: &mut *self.out,
                error: None,
            };
            let _ = value.visit(&mut v);
            match v.error {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })();
        result.map_err(|e| {
            self.error = Some(e);
            kv::Error::msg("write failed")
        })
    }
}

/// Writes one value as a JSON literal.
struct JsonValue<'a, W: io::Write + ?Sized> {
    out: &'a mut W,
    error: Option<io::Error>,
}

impl<W: io::Write + ?Sized> JsonValue<'_, W> {
    fn put(&mut self, r: io::Result<()>) -> Result<(), kv::Error> {
        r.map_err(|e| {
            self.error = Some(e);
            kv::Error::msg("write failed")
        })
    }
}

impl<'v, W: io::Write + ?Sized> VisitValue<'v> for JsonValue<'_, W> {
    /// Anything without a JSON shape: its `Display` (or `Debug` if captured with `:?`), escaped.
    fn visit_any(&mut self, value: Value<'_>) -> Result<(), kv::Error> {
        let out = &mut *self.out;
        let r = (|| {
            out.write_all(b"\"")?;
            let mut esc = JsonEscaper::new(&mut *out);
            write_guarded(&mut esc, |w| write!(w, "{value}"));
            done(esc)?;
            out.write_all(b"\"")
        })();
        self.put(r)
    }

    fn visit_null(&mut self) -> Result<(), kv::Error> {
        let r = self.out.write_all(b"null");
        self.put(r)
    }

    fn visit_u64(&mut self, v: u64) -> Result<(), kv::Error> {
        let r = write_u64(self.out, false, v);
        self.put(r)
    }

    fn visit_i64(&mut self, v: i64) -> Result<(), kv::Error> {
        let r = write_u64(self.out, v < 0, v.unsigned_abs());
        self.put(r)
    }

    fn visit_u128(&mut self, v: u128) -> Result<(), kv::Error> {
        let r = write_u128(self.out, false, v);
        self.put(r)
    }

    fn visit_i128(&mut self, v: i128) -> Result<(), kv::Error> {
        let r = write_u128(self.out, v < 0, v.unsigned_abs());
        self.put(r)
    }

    fn visit_f64(&mut self, v: f64) -> Result<(), kv::Error> {
        // `{:?}` keeps the float shape (`1.0`, `1e-7`, `1e300`), all valid JSON numbers.
        let r = if let Some(millis) = Thousandths::of(v) {
            millis.write(self.out)
        } else if v.is_finite() {
            write!(self.out, "{v:?}")
        } else if v.is_nan() {
            self.out.write_all(b"\"NaN\"")
        } else if v > 0.0 {
            self.out.write_all(b"\"inf\"")
        } else {
            self.out.write_all(b"\"-inf\"")
        };
        self.put(r)
    }

    fn visit_bool(&mut self, v: bool) -> Result<(), kv::Error> {
        let r = self.out.write_all(if v { b"true" } else { b"false" });
        self.put(r)
    }

    fn visit_str(&mut self, v: &str) -> Result<(), kv::Error> {
        let r = string(self.out, v);
        self.put(r)
    }
}

/// A float with at most three decimals, as every `duration_ms` is
/// (`pipeline::millis`), written without `fmt`'s shortest-float search — a
/// few hundred instructions on every `request completed` line. The text is
/// exactly `{:?}`'s (a test compares them); any other float takes `{:?}`.
struct Thousandths(u64);

impl Thousandths {
    /// `v` as a count of thousandths, when `v` is one such count divided by
    /// 1000 (what `pipeline::millis` returns) and below 10^9: then the
    /// count is exact and the decimal text round-trips to `v`.
    fn of(v: f64) -> Option<Thousandths> {
        if !(0.0..1e9).contains(&v) {
            return None;
        }
        let k = (v * 1000.0).round();
        (k / 1000.0 == v).then_some(Thousandths(k as u64))
    }

    /// `int.frac`, the fraction's trailing zeros dropped but one digit kept.
    fn write<W: io::Write + ?Sized>(&self, out: &mut W) -> io::Result<()> {
        let (int, frac) = (self.0 / 1000, self.0 % 1000);
        let digits = [
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let mut n = digits.len();
        while n > 2 && digits[n - 1] == b'0' {
            n -= 1;
        }
        out.write_all(crate::decimal::Decimal::new(int).as_bytes())?;
        out.write_all(&digits[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::Thousandths;

    fn fast(v: f64) -> Option<String> {
        Thousandths::of(v).map(|t| {
            let mut out = Vec::new();
            t.write(&mut out).expect("write");
            String::from_utf8(out).expect("utf-8")
        })
    }

    #[test]
    fn the_same_text_as_debug() {
        let mut checked = 0;
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let ks = (0..200_000u64).chain((0..200_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 1_000_000_000_000
        }));
        for k in ks {
            let v = k as f64 / 1000.0;
            let text = fast(v).expect("a count of thousandths");
            assert_eq!(text, format!("{v:?}"), "k = {k}");
            checked += 1;
        }
        assert_eq!(checked, 400_000);
        // Not thousandths, negative, or too large: left to `{:?}`.
        for v in [0.0001, 0.1 + 0.2, -1.0, 1e9, 1e300, f64::NAN, f64::INFINITY] {
            assert!(fast(v).is_none(), "{v}");
        }
    }
}
