//! Strict request-head parsing (RFC 9112) with size limits, and request framing analysis.

use std::io::ErrorKind;

use ascii::AsciiStr;

use crate::body::{Body, LineError};
use crate::common::{FieldValue, HTTPVersion, Header, HeaderField, Method, ShortText};
use crate::Limits;

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) target: ShortText,
    pub(crate) version: HTTPVersion,
    pub(crate) headers: Vec<Header>,
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// End of stream or a socket error: close without answering.
    Closed,
    /// The read deadline passed while the head was incomplete: answer 408 and close.
    TimedOut,
    /// Answer this status and close (the reason is for the debug log).
    Reject(u16, &'static str),
}

impl HeadError {
    fn from_line(e: LineError, too_long: u16) -> HeadError {
        match e {
            LineError::TooLong if too_long == 414 => {
                HeadError::Reject(414, "request line too long")
            }
            LineError::TooLong => HeadError::Reject(431, "header section too large"),
            LineError::BareLf => HeadError::Reject(400, "bare LF line ending"),
            LineError::Eof => HeadError::Closed,
            LineError::Io(e) => match e.kind() {
                ErrorKind::TimedOut | ErrorKind::WouldBlock => HeadError::TimedOut,
                _ => HeadError::Closed,
            },
        }
    }
}

/// Empty lines tolerated before a request line (RFC 9112 §2.2).
const MAX_LEADING_EMPTY_LINES: usize = 4;

/// Memory [`read_head`] works in, kept by its caller from one head to the next.
#[derive(Default)]
pub(crate) struct HeadScratch {
    /// A chunked body's size lines (a head's lines are read in place).
    pub(crate) line: Vec<u8>,
    /// The fields read so far. The head's own list is then allocated at its exact size: a
    /// request's head is freed by the worker that answers it, and a small block freed on
    /// another thread costs the allocator far less than one sized for 16 fields (768 bytes).
    headers: Vec<Header>,
}

/// Reads and validates a request head from the start of `src`, and advances `src` past it.
/// Once the request line is read, `request_line` holds its method and target, also when the
/// rest of the head is then refused. The lines are read in place: the connection's buffer
/// holds the whole head before it is parsed.
pub(crate) fn read_head(
    src: &mut &[u8],
    lim: &Limits,
    scratch: &mut HeadScratch,
    request_line: &mut Option<(Method, ShortText)>,
) -> Result<Head, HeadError> {
    *request_line = None;
    let headers = &mut scratch.headers;
    headers.clear();
    let mut empty = 0;
    let line = loop {
        let line =
            take_line(src, lim.max_request_line).map_err(|e| HeadError::from_line(e, 414))?;
        if !line.is_empty() {
            break line;
        }
        empty += 1;
        if empty > MAX_LEADING_EMPTY_LINES {
            return Err(HeadError::Reject(400, "empty lines instead of a request"));
        }
    };
    let (method, target, version) = parse_request_line(line)?;
    // Kept here (not cloned) while the headers are read; taken back below.
    *request_line = Some((method, target));

    let mut bytes = 0usize;
    loop {
        let budget = lim.max_header_bytes.saturating_sub(bytes);
        let line = take_line(src, budget).map_err(|e| HeadError::from_line(e, 431))?;
        bytes += line.len() + 2;
        if line.is_empty() {
            break;
        }
        if headers.len() >= lim.max_headers {
            return Err(HeadError::Reject(431, "too many header fields"));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(HeadError::Reject(400, "obsolete line folding"));
        }
        match parse_field_line(line) {
            Some(h) => headers.push(h),
            None => return Err(HeadError::Reject(400, "malformed header field")),
        }
    }

    let (method, target) = request_line.take().ok_or(HeadError::Closed)?;
    let mut exact = Vec::with_capacity(headers.len());
    exact.append(headers);
    Ok(Head {
        method,
        target,
        version,
        headers: exact,
    })
}

/// The next CRLF-terminated line of `src` without its CRLF, of at most `max` bytes of
/// content; `src` advances past it. [`read_line`](crate::body::read_line) for bytes already
/// in memory: nothing is copied.
fn take_line<'a>(src: &mut &'a [u8], max: usize) -> Result<&'a [u8], LineError> {
    let Some(lf) = memchr::memchr(b'\n', src) else {
        // `max` bytes of content plus the CR, without its end yet.
        return Err(if src.len() > max + 1 {
            LineError::TooLong
        } else {
            LineError::Eof
        });
    };
    if lf > max + 1 {
        return Err(LineError::TooLong);
    }
    let line = &src[..lf];
    *src = &src[lf + 1..];
    match line.split_last() {
        Some((b'\r', content)) => Ok(content),
        _ => Err(LineError::BareLf),
    }
}

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// [`is_tchar`] as a table: it runs for every byte of every header name, in and out.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

fn parse_request_line(line: &[u8]) -> Result<(Method, ShortText, HTTPVersion), HeadError> {
    let bad = |why| HeadError::Reject(400, why);
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), None, _) => return Err(bad("HTTP/0.9 request line")),
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() && !v.is_empty() => {
            (m, t, v)
        }
        _ => return Err(bad("malformed request line")),
    };

    if !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad("invalid method"));
    }
    let version = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major - b'0', minor - b'0') {
                (1, 0) => HTTPVersion(1, 0),
                // A higher 1.x minor version is handled as 1.1 (RFC 9110 §6.2).
                (1, _) => HTTPVersion(1, 1),
                (0, _) => return Err(bad("HTTP/0.x request")),
                _ => return Err(HeadError::Reject(505, "unsupported HTTP major version")),
            }
        }
        _ => return Err(bad("malformed HTTP version")),
    };

    // method and target are checked to be ASCII (tchar, visible), so the conversions cannot
    // fail; `AsciiStr`'s check is a cheaper one than UTF-8's.
    let method: Method = AsciiStr::from_ascii(method)
        .ok()
        .and_then(|m| m.as_str().parse().ok())
        .ok_or_else(|| bad("invalid method"))?;

    if !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(bad("invalid character in request target"));
    }
    let origin = target[0] == b'/';
    let asterisk = target == b"*" && method == Method::Options;
    let absolute =
        starts_with_ignore_case(target, b"http://") || starts_with_ignore_case(target, b"https://");
    if !(origin || asterisk || absolute) {
        return Err(bad(
            "request target is not in origin, absolute or asterisk form",
        ));
    }
    let target =
        ShortText::from_ascii(AsciiStr::from_ascii(target).map_err(|_| bad("invalid target"))?);
    Ok((method, target, version))
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() > prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Parses `field-name ":" OWS field-value OWS`. Rejects whitespace before the colon, non-token
/// names and control characters in values; obs-text is kept as UTF-8 (see
/// [`FieldValue::from_field_bytes`]).
pub(crate) fn parse_field_line(line: &[u8]) -> Option<Header> {
    let colon = memchr::memchr(b':', line)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |p| p + 1);
    let value = &value[start..end];
    if !is_field_value(value) {
        return None;
    }
    Some(Header {
        // A name clients commonly send is shared; any other is copied.
        field: HeaderField::from_bytes(name).ok()?,
        value: FieldValue::from_field_bytes(value),
    })
}

/// Whether every byte of a field value is visible ASCII, a space, a tab or
/// obs-text (0x80–0xFF: RFC 9110 §5.5 allows it, and Go's, hyper's and
/// nginx's parsers pass it through; clients send UTF-8 in `User-Agent` and
/// their own fields): eight bytes at a time (a word of plain text is the
/// common case), a word that may hold a tab or an odd byte then byte by byte.
/// Control characters (and DEL) are refused.
fn is_field_value(value: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let byte_ok = |b: &u8| *b == b'\t' || (0x20..=0x7e).contains(b) || *b >= 0x80;
    let mut words = value.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        // Non-zero iff some byte is below 0x20 (`has_less`), or is 0x7f or
        // above (adding one sets its high bit, or it was set already; a carry
        // only leaves a byte of 0xff, itself a yes). Exact as a yes/no answer.
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        let del_or_high = (w | w.wrapping_add(ONES)) & HIGHS;
        if (below_space | del_or_high) != 0 && !word.iter().all(byte_ok) {
            return false;
        }
    }
    words.remainder().iter().all(byte_ok)
}

/// Whether a `Host` value is `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC
/// 3986 §3.2.2), or empty (a target without an authority). The request is
/// refused otherwise: a server must answer 400 to an invalid Host.
fn is_host(value: &[u8]) -> bool {
    // reg-name: unreserved, pct-encoded (its `%` and hex digits) and sub-delims.
    let reg_name_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(b);
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        // IP-literal: an IPv6 address or an IPvFuture, in brackets.
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..close];
        let literal_byte = |b: &u8| reg_name_byte(b) || *b == b':';
        if literal.is_empty() || !literal.iter().all(literal_byte) {
            return false;
        }
        match &rest[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&[][..], port),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon + 1..]),
            None => (value, &[][..]),
        }
    };
    host.iter().all(reg_name_byte) && port.iter().all(u8::is_ascii_digit)
}

/// How a request is framed and what the connection does after it.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) body: Body,
    pub(crate) content_length: Option<u64>,
    pub(crate) expects_continue: bool,
    /// The client allows the connection to stay open after this request.
    pub(crate) keep_alive: bool,
}

fn comma_tokens<'a>(headers: &'a [Header], name: &'static str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |h| h.field.equiv(name))
        .flat_map(|h| h.value.as_str().split(','))
        .map(|t| t.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|t| !t.is_empty())
}

/// Decides the framing of a request (RFC 9112 §6) or the status that rejects it.
pub(crate) fn analyse(head: &Head, lim: &Limits) -> Result<Plan, (u16, &'static str)> {
    let headers = &head.headers;
    let http11 = head.version == HTTPVersion(1, 1);

    let mut hosts = headers.iter().filter(|h| h.field.equiv("Host"));
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err((400, "duplicate Host")),
        (None, _) if http11 => return Err((400, "missing Host")),
        (Some(host), None) if !is_host(host.value.as_bytes()) => return Err((400, "invalid Host")),
        _ => {}
    }

    let has_te = headers.iter().any(|h| h.field.equiv("Transfer-Encoding"));
    let cls: Vec<&Header> = headers
        .iter()
        .filter(|h| h.field.equiv("Content-Length"))
        .collect();

    let mut content_length = None;
    let body = if has_te {
        if !http11 {
            return Err((400, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !cls.is_empty() {
            return Err((400, "both Content-Length and Transfer-Encoding"));
        }
        let codings: Vec<&str> = comma_tokens(headers, "Transfer-Encoding").collect();
        match codings.as_slice() {
            [only] if only.eq_ignore_ascii_case("chunked") => Body::chunked(),
            [.., last] if last.eq_ignore_ascii_case("chunked") => {
                return Err((501, "unsupported transfer coding"))
            }
            _ => return Err((400, "chunked is not the final transfer coding")),
        }
    } else if !cls.is_empty() {
        if cls.len() > 1 {
            return Err((400, "several Content-Length fields"));
        }
        let v = cls[0].value.as_str();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err((400, "invalid Content-Length"));
        }
        let n: u64 = v.parse().map_err(|_| (400, "invalid Content-Length"))?;
        if n > lim.max_body_bytes {
            return Err((413, "Content-Length over the body limit"));
        }
        content_length = Some(n);
        Body::length(n)
    } else {
        Body::Done
    };

    let mut expects_continue = false;
    for e in headers.iter().filter(|h| h.field.equiv("Expect")) {
        if e.value.as_str().eq_ignore_ascii_case("100-continue") {
            expects_continue = http11;
        } else {
            return Err((417, "unsupported expectation"));
        }
    }

    let (mut close, mut keep, mut upgrade) = (false, false, false);
    for t in comma_tokens(headers, "Connection") {
        close |= t.eq_ignore_ascii_case("close");
        keep |= t.eq_ignore_ascii_case("keep-alive");
        upgrade |= t.eq_ignore_ascii_case("upgrade");
    }
    let keep_alive = !close && !upgrade && (http11 || keep);

    Ok(Plan {
        body,
        content_length,
        expects_continue: expects_continue && !body_is_empty(content_length, has_te),
        keep_alive,
    })
}

fn body_is_empty(content_length: Option<u64>, chunked: bool) -> bool {
    !chunked && content_length.unwrap_or(0) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Head, HeadError> {
        let mut src = raw.as_bytes();
        read_head(
            &mut src,
            &Limits::default(),
            &mut HeadScratch::default(),
            &mut None,
        )
    }

    fn status(raw: &str) -> u16 {
        match head(raw) {
            Ok(h) => match analyse(&h, &Limits::default()) {
                Ok(_) => 200,
                Err((s, _)) => s,
            },
            Err(HeadError::Reject(s, _)) => s,
            Err(HeadError::TimedOut) => 408,
            Err(HeadError::Closed) => 0,
        }
    }

    /// A shared (known) name and an owned one read the same: the bytes the
    /// client sent, compared without regard to case.
    #[test]
    fn field_names_keep_the_clients_spelling() {
        let h = head(
            "GET / HTTP/1.1\r\nHost: a\r\nHOST-X: b\r\ncontent-type: c\r\nCONTENT-TYPE: d\r\n\r\n",
        )
        .unwrap_or_else(|_| panic!("refused"));
        let names: Vec<&str> = h
            .headers
            .iter()
            .map(|h| h.field.as_str().as_str())
            .collect();
        assert_eq!(names, ["Host", "HOST-X", "content-type", "CONTENT-TYPE"]);
        assert!(h.headers[2].field == h.headers[3].field);
        assert!(h.headers[3].field.equiv("Content-Type"));
        assert!(HeaderField::known(b"Host").is_some() && HeaderField::known(b"HOST").is_none());
    }

    /// The word-at-a-time check answers as the byte rule does: every byte
    /// value at every position of a word and of the tail.
    #[test]
    fn field_value_check_is_the_byte_rule() {
        let rule = |v: &[u8]| {
            v.iter()
                .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80)
        };
        for b in 0..=255u8 {
            for len in 1..20 {
                for at in 0..len {
                    let mut v = vec![b'a'; len];
                    v[at] = b;
                    assert_eq!(is_field_value(&v), rule(&v), "byte {b:#x} at {at} of {len}");
                }
            }
        }
        assert!(is_field_value(b"") && is_field_value(b"text/plain; charset=utf-8\tx"));
    }

    /// The request line split without a vector: the same answers as before.
    #[test]
    fn request_line_shapes() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status("GET /\r\n\r\n"), 400);
        assert_eq!(status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1 x\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET\r\n\r\n"), 400);
    }

    #[test]
    fn the_tchar_table_is_rfc_9110s_tchar() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), want, "byte {b}");
        }
    }

    #[test]
    fn accepts_valid() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status("\r\nGET /x?y HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status("GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            200
        );
        let h = head("GET / HTTP/1.1\r\nX:  a b \t\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(h.headers[0].value.as_str(), "a b");
    }

    /// obs-text in a value is passed on (UTF-8 as sent, other bytes as
    /// U+FFFD); control characters are still refused.
    #[test]
    fn obs_text_in_values_is_kept() {
        let parse = |raw: &[u8]| {
            let mut src = raw;
            read_head(
                &mut src,
                &Limits::default(),
                &mut HeadScratch::default(),
                &mut None,
            )
        };
        let h = parse(b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: caf\xc3\xa9 \xe2\x9c\x93\r\nX: \xff\xfe\r\n\r\n")
            .unwrap_or_else(|_| panic!("refused"));
        assert_eq!(h.headers[1].value.as_str(), "caf\u{e9} \u{2713}");
        assert_eq!(h.headers[2].value.as_str(), "\u{fffd}\u{fffd}");
        for bad in [&b"X: a\x7fb"[..], b"X: a\x00b", b"X: \x1b[0m"] {
            let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            raw.extend_from_slice(bad);
            raw.extend_from_slice(b"\r\n\r\n");
            assert!(
                matches!(parse(&raw), Err(HeadError::Reject(400, _))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn host_values() {
        let req = |host: &str| status(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        for ok in [
            "a",
            "",
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[fe80::1%25eth0]",
            "xn--bcher-kva.example",
            "a_b.local",
        ] {
            assert_eq!(req(ok), 200, "{ok:?}");
        }
        for bad in [
            "a b",
            "a/b",
            "a@b",
            "a:b",
            "a:80:81",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:8a",
            "a\"b",
            "ex ample.com:80",
        ] {
            assert_eq!(req(bad), 400, "{bad:?}");
        }
        // HTTP/1.0 may leave it out, but not send a bad one.
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status("GET / HTTP/1.0\r\nHost: a b\r\n\r\n"), 400);
    }

    #[test]
    fn rejects_invalid() {
        let h = "Host: a\r\n";
        assert_eq!(status("GET /\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/0.9\r\n\r\n"), 400);
        assert_eq!(status("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/3.0\r\n\r\n"), 505);
        assert_eq!(status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET a.com:80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\nHost: a\n\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{h}{h}\r\n")), 400);
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{h}X : y\r\n\r\n")), 400);
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{h}X: y\r\n z\r\n\r\n")),
            400
        );
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{h}X: \x01\r\n\r\n")),
            400
        );
        let te = |v: &str| format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: {v}\r\n\r\n");
        assert_eq!(status(&te("gzip")), 400);
        assert_eq!(status(&te("gzip, chunked")), 501);
        assert_eq!(status(&te("chunked, chunked")), 501);
        assert_eq!(status(&te("chunked, gzip")), 400);
        let cl = |v: &str| format!("POST / HTTP/1.1\r\n{h}Content-Length: {v}\r\n\r\n");
        assert_eq!(status(&cl("+5")), 400);
        assert_eq!(status(&cl("-5")), 400);
        assert_eq!(status(&cl("5, 5")), 400);
        assert_eq!(status(&cl("abc")), 400);
        assert_eq!(status(&cl("99999999999999999999999")), 400);
        assert_eq!(status(&cl("18446744073709551615")), 413);
        assert_eq!(
            status(&format!(
                "POST / HTTP/1.1\r\n{h}Content-Length: 5\r\nContent-Length: 5\r\n\r\n"
            )),
            400
        );
        assert_eq!(
            status(&format!(
                "POST / HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            )),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{h}Expect: x\r\n\r\n")),
            417
        );
        assert_eq!(
            status(&format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000))),
            414
        );
        assert_eq!(
            status(&format!(
                "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
                "a".repeat(17000)
            )),
            431
        );
        let many: String = (0..101).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{h}{many}\r\n")), 431);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n"), 0);
    }

    #[test]
    fn lines_are_taken_in_place_within_their_bound() {
        let take = |raw: &'static [u8], max| {
            let mut src = raw;
            let line = take_line(&mut src, max);
            (line, src)
        };
        assert!(matches!(take(b"abc\r\nrest", 3), (Ok(b"abc"), b"rest")));
        assert!(matches!(take(b"abcd\r\n", 3), (Err(LineError::TooLong), _)));
        assert!(matches!(take(b"abc\nx", 3), (Err(LineError::BareLf), _)));
        assert!(matches!(take(b"\r\n", 0), (Ok(b""), b"")));
        // No end yet: more may come, unless what is there is already too long.
        assert!(matches!(take(b"abc\r", 3), (Err(LineError::Eof), _)));
        assert!(matches!(take(b"abcde", 3), (Err(LineError::TooLong), _)));
    }
}
