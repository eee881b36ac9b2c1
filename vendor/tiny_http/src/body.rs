//! Request body framing (Content-Length and chunked) with limits, and the bounded line reader
//! shared with the head parser.

use std::fmt;
use std::io::{self, BufRead, ErrorKind, Read};

/// Longest accepted chunk-size line (hex size plus chunk extensions), in bytes.
pub(crate) const MAX_CHUNK_LINE: usize = 1024;

/// The payload of the `io::Error` returned by a request body reader when the body grows past
/// [`Limits::max_body_bytes`](crate::Limits::max_body_bytes).
#[derive(Debug)]
pub struct BodyTooLarge;

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body exceeds the configured limit")
    }
}

impl std::error::Error for BodyTooLarge {}

/// True if `err` was returned by a request body reader because the body exceeds
/// [`Limits::max_body_bytes`](crate::Limits::max_body_bytes). Answer `413` in that case; the
/// connection is closed after the response.
pub fn is_body_too_large(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<BodyTooLarge>())
}

/// Why reading a line failed.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The line is longer than allowed.
    TooLong,
    /// A LF not preceded by CR.
    BareLf,
    /// End of stream before the end of the line.
    Eof,
    Io(io::Error),
}

/// Reads one CRLF-terminated line into `out` (without the CRLF), reading at most `max` bytes of
/// line content. Never consumes bytes past the LF.
pub(crate) fn read_line<R: BufRead + ?Sized>(
    src: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), LineError> {
    out.clear();
    loop {
        let avail = match src.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if avail.is_empty() {
            return Err(LineError::Eof);
        }
        match memchr::memchr(b'\n', avail) {
            Some(pos) => {
                // `max` bytes of content plus the CR.
                if out.len() + pos > max + 1 {
                    return Err(LineError::TooLong);
                }
                out.extend_from_slice(&avail[..pos]);
                src.consume(pos + 1);
                if out.pop() != Some(b'\r') {
                    return Err(LineError::BareLf);
                }
                return Ok(());
            }
            None => {
                let n = avail.len();
                if out.len() + n > max + 1 {
                    return Err(LineError::TooLong);
                }
                out.extend_from_slice(avail);
                src.consume(n);
            }
        }
    }
}

/// What ended a body in error, kept so that later reads fail the same way.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Failure {
    TooLarge,
    TimedOut,
    Eof,
    Invalid(&'static str),
    Io(ErrorKind),
}

impl Failure {
    pub(crate) fn to_error(self) -> io::Error {
        match self {
            Failure::TooLarge => io::Error::new(ErrorKind::InvalidData, BodyTooLarge),
            Failure::TimedOut => {
                io::Error::new(ErrorKind::TimedOut, "timed out reading the request body")
            }
            Failure::Eof => io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed before the end of the request body",
            ),
            Failure::Invalid(msg) => io::Error::new(ErrorKind::InvalidData, msg),
            Failure::Io(kind) => io::Error::new(kind, "error reading the request body"),
        }
    }

    fn from_line(e: LineError, too_long: &'static str) -> Failure {
        match e {
            LineError::TooLong => Failure::Invalid(too_long),
            LineError::BareLf => Failure::Invalid("bare LF in chunked body"),
            LineError::Eof => Failure::Eof,
            LineError::Io(e) => Failure::from_io(&e),
        }
    }

    pub(crate) fn from_io(e: &io::Error) -> Failure {
        match e.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Failure::TimedOut,
            ErrorKind::UnexpectedEof => Failure::Eof,
            k => Failure::Io(k),
        }
    }
}

#[derive(Debug)]
pub(crate) enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading trailer fields.
    Trailers { bytes: usize, count: usize },
}

/// The framing state of a request body.
#[derive(Debug)]
pub(crate) enum Body {
    /// Fully read (or there was none).
    Done,
    /// Content-Length framing: bytes left.
    Length(u64),
    /// Chunked framing: state and decoded bytes so far.
    Chunked { state: ChunkState, total: u64 },
    /// The body failed; the connection must close.
    Failed(Failure),
}

/// Limits applied while decoding a body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub(crate) max_body: u64,
    pub(crate) max_trailer_bytes: usize,
    pub(crate) max_trailers: usize,
}

impl Body {
    pub(crate) fn chunked() -> Body {
        Body::Chunked {
            state: ChunkState::Size,
            total: 0,
        }
    }

    pub(crate) fn length(n: u64) -> Body {
        if n == 0 {
            Body::Done
        } else {
            Body::Length(n)
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// Reads decoded body bytes from `src` into `buf`. Returns `Ok(0)` at the end of the body.
    pub(crate) fn read<R: BufRead + ?Sized>(
        &mut self,
        src: &mut R,
        buf: &mut [u8],
        lim: &BodyLimits,
        line: &mut Vec<u8>,
    ) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.step(src, buf, lim, line) {
            Ok(n) => Ok(n),
            Err(f) => {
                *self = Body::Failed(f);
                Err(f.to_error())
            }
        }
    }

    fn step<R: BufRead + ?Sized>(
        &mut self,
        src: &mut R,
        buf: &mut [u8],
        lim: &BodyLimits,
        line: &mut Vec<u8>,
    ) -> Result<usize, Failure> {
        loop {
            match self {
                Body::Done => return Ok(0),
                Body::Failed(f) => return Err(*f),
                Body::Length(rem) => {
                    let want = buf.len().min(usize::try_from(*rem).unwrap_or(usize::MAX));
                    let n = read_some(src, &mut buf[..want])?;
                    if n == 0 {
                        return Err(Failure::Eof);
                    }
                    *rem -= n as u64;
                    if *rem == 0 {
                        *self = Body::Done;
                    }
                    return Ok(n);
                }
                Body::Chunked { state, total } => match state {
                    ChunkState::Size => {
                        read_line(src, line, MAX_CHUNK_LINE)
                            .map_err(|e| Failure::from_line(e, "chunk-size line too long"))?;
                        let size = parse_chunk_size(line)?;
                        if size == 0 {
                            *state = ChunkState::Trailers { bytes: 0, count: 0 };
                        } else {
                            match total.checked_add(size) {
                                Some(t) if t <= lim.max_body => *total = t,
                                _ => return Err(Failure::TooLarge),
                            }
                            *state = ChunkState::Data(size);
                        }
                    }
                    ChunkState::Data(rem) => {
                        let want = buf.len().min(usize::try_from(*rem).unwrap_or(usize::MAX));
                        let n = read_some(src, &mut buf[..want])?;
                        if n == 0 {
                            return Err(Failure::Eof);
                        }
                        *rem -= n as u64;
                        if *rem == 0 {
                            *state = ChunkState::DataEnd;
                        }
                        return Ok(n);
                    }
                    ChunkState::DataEnd => {
                        read_line(src, line, 0)
                            .map_err(|e| Failure::from_line(e, "missing CRLF after chunk data"))?;
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailers { bytes, count } => {
                        let budget = lim.max_trailer_bytes.saturating_sub(*bytes);
                        read_line(src, line, budget)
                            .map_err(|e| Failure::from_line(e, "chunked trailers too large"))?;
                        if line.is_empty() {
                            *self = Body::Done;
                            return Ok(0);
                        }
                        *bytes += line.len() + 2;
                        *count += 1;
                        if *count > lim.max_trailers {
                            return Err(Failure::Invalid("too many chunked trailer fields"));
                        }
                        if crate::head::parse_field_line(line).is_none() {
                            return Err(Failure::Invalid("malformed chunked trailer field"));
                        }
                    }
                },
            }
        }
    }
}

impl Body {
    /// Decodes what `input` holds of the body into `out` without waiting for more: returns how
    /// many bytes of `input` were consumed. A line (chunk size, chunk end, trailer) that is not
    /// complete yet is left in `input` for the next call, so the I/O thread can feed the body
    /// as it arrives. `Body::Done` once the body is complete; a failure leaves `Body::Failed`.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        lim: &BodyLimits,
        line: &mut Vec<u8>,
    ) -> Result<usize, Failure> {
        match self.feed_inner(input, out, lim, line) {
            Ok(n) => Ok(n),
            Err(f) => {
                *self = Body::Failed(f);
                Err(f)
            }
        }
    }

    fn feed_inner(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        lim: &BodyLimits,
        line: &mut Vec<u8>,
    ) -> Result<usize, Failure> {
        let mut pos = 0;
        // One complete line from `input[pos..]`, or `None` when it has not fully arrived.
        let take_line = |pos: &mut usize, line: &mut Vec<u8>, max: usize, what: &'static str| {
            let mut s = &input[*pos..];
            match read_line(&mut s, line, max) {
                Ok(()) => {
                    *pos = input.len() - s.len();
                    Ok(true)
                }
                Err(LineError::Eof) => Ok(false),
                Err(e) => Err(Failure::from_line(e, what)),
            }
        };
        loop {
            match self {
                Body::Done => return Ok(pos),
                Body::Failed(f) => return Err(*f),
                Body::Length(rem) => {
                    let n = (input.len() - pos).min(usize::try_from(*rem).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                    *rem -= n as u64;
                    if *rem == 0 {
                        *self = Body::Done;
                    }
                    return Ok(pos);
                }
                Body::Chunked { state, total } => match state {
                    ChunkState::Size => {
                        if !take_line(&mut pos, line, MAX_CHUNK_LINE, "chunk-size line too long")? {
                            return Ok(pos);
                        }
                        let size = parse_chunk_size(line)?;
                        if size == 0 {
                            *state = ChunkState::Trailers { bytes: 0, count: 0 };
                        } else {
                            match total.checked_add(size) {
                                Some(t) if t <= lim.max_body => *total = t,
                                _ => return Err(Failure::TooLarge),
                            }
                            *state = ChunkState::Data(size);
                        }
                    }
                    ChunkState::Data(rem) => {
                        let n =
                            (input.len() - pos).min(usize::try_from(*rem).unwrap_or(usize::MAX));
                        if n == 0 {
                            return Ok(pos);
                        }
                        out.extend_from_slice(&input[pos..pos + n]);
                        pos += n;
                        *rem -= n as u64;
                        if *rem == 0 {
                            *state = ChunkState::DataEnd;
                        }
                    }
                    ChunkState::DataEnd => {
                        if !take_line(&mut pos, line, 0, "missing CRLF after chunk data")? {
                            return Ok(pos);
                        }
                        if !line.is_empty() {
                            return Err(Failure::Invalid("missing CRLF after chunk data"));
                        }
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailers { bytes, count } => {
                        let budget = lim.max_trailer_bytes.saturating_sub(*bytes);
                        if !take_line(&mut pos, line, budget, "chunked trailers too large")? {
                            return Ok(pos);
                        }
                        if line.is_empty() {
                            *self = Body::Done;
                            return Ok(pos);
                        }
                        *bytes += line.len() + 2;
                        *count += 1;
                        if *count > lim.max_trailers {
                            return Err(Failure::Invalid("too many chunked trailer fields"));
                        }
                        if crate::head::parse_field_line(line).is_none() {
                            return Err(Failure::Invalid("malformed chunked trailer field"));
                        }
                    }
                },
            }
        }
    }
}

fn read_some<R: Read + ?Sized>(src: &mut R, buf: &mut [u8]) -> Result<usize, Failure> {
    loop {
        match src.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::from_io(&e)),
        }
    }
}

/// Parses `chunk-size [ chunk-ext ]`: 1 to 16 hex digits, then optionally extensions
/// (`;name[=value]`, bounded by the line limit, no control characters).
fn parse_chunk_size(line: &[u8]) -> Result<u64, Failure> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Failure::Invalid("invalid chunk size"));
    }
    if digits > 16 {
        return Err(Failure::Invalid("chunk size too large"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        // Cannot overflow: at most 16 hex digits.
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        size = (size << 4) | u64::from(d);
    }
    let rest = &line[digits..];
    let ext = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map_or(&rest[rest.len()..], |p| &rest[p..]);
    if ext.is_empty() {
        return Ok(size);
    }
    if ext[0] != b';' || ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Failure::Invalid("invalid chunk extension"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> BodyLimits {
        BodyLimits {
            max_body: 100,
            max_trailer_bytes: 64,
            max_trailers: 2,
        }
    }

    fn decode(input: &[u8]) -> io::Result<Vec<u8>> {
        let mut src = io::BufReader::new(input);
        let mut body = Body::chunked();
        let mut out = Vec::new();
        let mut line = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = body.read(&mut src, &mut buf, &lim(), &mut line)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Feeds `input` one byte at a time, as a slow client would send it.
    fn feed_bytewise(input: &[u8]) -> Result<Vec<u8>, Failure> {
        let mut body = Body::chunked();
        let (mut out, mut line, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        for &b in input {
            pending.push(b);
            let n = body.feed(&pending, &mut out, &lim(), &mut line)?;
            pending.drain(..n);
            if body.is_done() {
                break;
            }
        }
        assert!(body.is_done(), "body incomplete");
        Ok(out)
    }

    #[test]
    fn feed_decodes_byte_by_byte_like_read() {
        let input = b"5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(feed_bytewise(input).unwrap(), b"hello world");
        assert!(matches!(feed_bytewise(b"65\r\n"), Err(Failure::TooLarge)));
        assert!(feed_bytewise(b"5\r\nhelloXX0\r\n\r\n").is_err());
        let mut body = Body::length(3);
        let mut out = Vec::new();
        assert_eq!(
            body.feed(b"abcdef", &mut out, &lim(), &mut Vec::new())
                .unwrap(),
            3
        );
        assert!(body.is_done());
        assert_eq!(out, b"abc");
    }

    #[test]
    fn chunked_simple() {
        assert_eq!(decode(b"5\r\nhello\r\n0\r\n\r\n").unwrap(), b"hello");
        assert_eq!(
            decode(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn chunked_ok_with_ext_and_trailers() {
        let out = decode(b"5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n").unwrap();
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn chunked_rejects() {
        assert!(decode(b"zz\r\n").is_err());
        assert!(decode(b"5\nhello\r\n0\r\n\r\n").is_err());
        assert!(decode(b"5\r\nhelloXX0\r\n\r\n").is_err());
        assert!(decode(b"00000000000000001\r\nx\r\n0\r\n\r\n").is_err());
        assert!(decode(b"-5\r\n").is_err());
        let too_big = decode(b"65\r\n").unwrap_err();
        assert!(is_body_too_large(&too_big));
        assert!(decode(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n").is_err());
        assert!(decode(b"0\r\nnot a field\r\n\r\n").is_err());
        let long = format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(MAX_CHUNK_LINE));
        assert!(decode(long.as_bytes()).is_err());
        assert!(decode(b"5\r\nhel").is_err());
    }

    #[test]
    fn line_reader() {
        let mut src = io::BufReader::new(&b"abc\r\nde\nxyz"[..]);
        let mut line = Vec::new();
        read_line(&mut src, &mut line, 10).unwrap();
        assert_eq!(line, b"abc");
        assert!(matches!(
            read_line(&mut src, &mut line, 10),
            Err(LineError::BareLf)
        ));
        assert!(matches!(
            read_line(&mut src, &mut line, 1),
            Err(LineError::TooLong)
        ));
    }
}
