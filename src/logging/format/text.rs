//! The text line format, for a terminal:
//! `2026-11-24T09:01:02.345Z INFO  target: msg key=value request_id=... trace_id=... span_id=...`.
//!
//! Values are bare when they are one unambiguous token and `"quoted"` otherwise (empty, or holding
//! a space, `=`, `"`, `\` or a control character). Control characters are escaped everywhere, the
//! message included, so a record is always one line and cannot drive the terminal. No colours:
//! the format is for reading logs locally, and plain text survives `| less` and copy-paste.

use std::fmt::{self, Write as _};
use std::io;
use std::time::SystemTime;

use log::kv::{self, Key, Value, VisitSource, VisitValue};
use log::Record;

use super::{
    level_name, write_args, write_guarded, write_u128, write_u64, Seen, BUILTIN,
    BUILTIN_WITH_CONTEXT,
};
use crate::logging::context::{self, hex};
use crate::logging::escape::{text_needs_quotes, TextEscaper};
use crate::rfc3339::Rfc3339Millis;

/// Writes `record` as one text line and a `\n` into `out`, stamped with `now`.
///
/// Same fields and the same first-occurrence-wins rule as [`super::write_json`]; the request
/// context goes at the end of the line, where it is least in the way.
pub fn write_text<W: io::Write + ?Sized>(
    out: &mut W,
    now: SystemTime,
    record: &Record<'_>,
) -> io::Result<()> {
    out.write_all(Rfc3339Millis::new(now).as_bytes())?;
    out.write_all(b" ")?;
    let name = level_name(record.level());
    out.write_all(name.as_bytes())?;
    // Pad to the longest name (`ERROR`, `TRACE`) so that targets line up.
    out.write_all(&b"      "[..6 - name.len()])?;
    escaped(out, false, |w| w.write_str(record.target()))?;
    out.write_all(b": ")?;
    {
        let mut esc = TextEscaper::new(out, false);
        write_args(&mut esc, record.args());
        if let Some(e) = esc.error {
            return Err(e);
        }
    }

    let ctx = context::current();
    let mut fields = Fields {
        out: &mut *out,
        seen: Seen::new(if ctx.is_some() {
            BUILTIN_WITH_CONTEXT
        } else {
            BUILTIN
        }),
        error: None,
    };
    let _ = record.key_values().visit(&mut fields);
    if let Some(e) = fields.error {
        return Err(e);
    }

    if let Some(ctx) = ctx {
        out.write_all(b" request_id=")?;
        str_value(out, ctx.request_id.as_str())?;
        if let Some(id) = ctx.trace_id {
            out.write_all(b" trace_id=")?;
            out.write_all(&hex::<16, 32>(&id))?;
        }
        if let Some(id) = ctx.span_id {
            out.write_all(b" span_id=")?;
            out.write_all(&hex::<8, 16>(&id))?;
        }
    }
    out.write_all(b"\n")
}

/// Runs `f` through a [`TextEscaper`], returning the I/O error it kept, if any.
fn escaped<W: io::Write + ?Sized>(
    out: &mut W,
    quoted: bool,
    f: impl FnOnce(&mut TextEscaper<'_, W>) -> fmt::Result,
) -> io::Result<()> {
    let mut esc = TextEscaper::new(out, quoted);
    write_guarded(&mut esc, f);
    match esc.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Writes a string value, quoted only when it needs to be.
fn str_value<W: io::Write + ?Sized>(out: &mut W, s: &str) -> io::Result<()> {
    if text_needs_quotes(s) {
        out.write_all(b"\"")?;
        escaped(out, true, |w| w.write_str(s))?;
        out.write_all(b"\"")
    } else {
        out.write_all(s.as_bytes())
    }
}

/// Writes each key/value as ` key=value`.
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
            self.out.write_all(b" ")?;
            escaped(self.out, false, |w| w.write_str(key.as_str()))?;
            self.out.write_all(b"=")?;
            let mut v = TextValue {
                out: &mut *self.out,
                error: None,
            };
            let _ = value.visit(&mut v);
            v.error.map_or(Ok(()), Err)
        })();
        result.map_err(|e| {
            self.error = Some(e);
            kv::Error::msg("write failed")
        })
    }
}

/// Writes one value: numbers and booleans bare, strings by [`str_value`].
struct TextValue<'a, W: io::Write + ?Sized> {
    out: &'a mut W,
    error: Option<io::Error>,
}

impl<W: io::Write + ?Sized> TextValue<'_, W> {
    fn put(&mut self, r: io::Result<()>) -> Result<(), kv::Error> {
        r.map_err(|e| {
            self.error = Some(e);
            kv::Error::msg("write failed")
        })
    }
}

impl<'v, W: io::Write + ?Sized> VisitValue<'v> for TextValue<'_, W> {
    /// `Display` (or `Debug`) output: rendered into a stack buffer first to decide on quotes;
    /// one longer than the buffer is streamed quoted instead (formatted a second time).
    fn visit_any(&mut self, value: Value<'_>) -> Result<(), kv::Error> {
        let mut stack = StackBuf::new();
        write_guarded(&mut stack, |w| write!(w, "{value}"));
        let r = if !stack.overflow {
            str_value(self.out, stack.as_str())
        } else {
            let out = &mut *self.out;
            (|| {
                out.write_all(b"\"")?;
                escaped(out, true, |w| write!(w, "{value}"))?;
                out.write_all(b"\"")
            })()
        };
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
        let r = write!(self.out, "{v:?}");
        self.put(r)
    }

    fn visit_bool(&mut self, v: bool) -> Result<(), kv::Error> {
        let r = self.out.write_all(if v { b"true" } else { b"false" });
        self.put(r)
    }

    fn visit_str(&mut self, v: &str) -> Result<(), kv::Error> {
        let r = str_value(self.out, v);
        self.put(r)
    }
}

/// A fixed-capacity `fmt::Write` target; refuses (with `fmt::Error`, setting `overflow`) a chunk
/// that does not fit, so its contents are always whole `str` chunks, hence valid UTF-8.
struct StackBuf {
    buf: [u8; 256],
    len: usize,
    overflow: bool,
}

impl StackBuf {
    fn new() -> Self {
        StackBuf {
            buf: [0; 256],
            len: 0,
            overflow: false,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let Some(dst) = self.buf.get_mut(self.len..end) else {
            self.overflow = true;
            return Err(fmt::Error);
        };
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
