use crate::common::{HTTPVersion, Header, HeaderField, StatusCode};
use httpdate::HttpDate;
use std::cmp::Ordering;
use std::sync::mpsc::Receiver;

use std::io::Result as IoResult;
use std::io::{self, Cursor, Read, Write};

use std::fs::File;

use std::str::FromStr;
use std::time::SystemTime;

/// Object representing an HTTP response whose purpose is to be given to a `Request`.
///
/// Some headers cannot be changed. Trying to define the value
/// of one of these will have no effect:
///
///  - `Connection` (except `Connection: close`, which is kept: the response then carries it and
///    the connection is closed after it)
///  - `Trailer`
///  - `Transfer-Encoding`
///  - `Upgrade`
///
/// Some headers have special behaviors:
///
///  - `Content-Encoding`: If you define this header, the library
///    will assume that the data from the `Read` object has the specified encoding
///    and will just pass-through.
///
///  - `Content-Length`: The length of the data should be set manually
///    using the `Reponse` object's API. Attempting to set the value of this
///    header will be equivalent to modifying the size of the data but the header
///    itself may not be present in the final result.
///
///  - `Content-Type`: You may only set this header to one value at a time. If you
///    try to set it more than once, the existing value will be overwritten. This
///    behavior differs from the default for most headers, which is to allow them to
///    be set multiple times in the same response.
///
pub struct Response<R> {
    reader: R,
    status_code: StatusCode,
    headers: Vec<Header>,
    data_length: Option<usize>,
    chunked_threshold: Option<usize>,
    close: bool,
}

/// The `Connection` header a response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnHeader {
    None,
    Close,
    KeepAlive,
}

impl ConnHeader {
    /// The header's value; empty when no `Connection` header is sent.
    pub(crate) fn value(self) -> &'static [u8] {
        match self {
            ConnHeader::None => b"",
            ConnHeader::Close => b"close",
            ConnHeader::KeepAlive => b"keep-alive",
        }
    }
}

/// Writes the body in chunked transfer coding (one chunk per write).
struct ChunkedEncoder<W: Write> {
    inner: W,
}

impl<W: Write> Write for ChunkedEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.inner, "{:X}\r\n", buf.len())?;
        self.inner.write_all(buf)?;
        self.inner.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A `Response` without a template parameter.
pub type ResponseBox = Response<Box<dyn Read + Send>>;

/// Transfer encoding to use when sending the message.
/// Note that only *supported* encoding are listed here.
#[derive(Copy, Clone)]
enum TransferEncoding {
    Identity,
    Chunked,
}

impl FromStr for TransferEncoding {
    type Err = ();

    fn from_str(input: &str) -> Result<TransferEncoding, ()> {
        if input.eq_ignore_ascii_case("identity") {
            Ok(TransferEncoding::Identity)
        } else if input.eq_ignore_ascii_case("chunked") {
            Ok(TransferEncoding::Chunked)
        } else {
            Err(())
        }
    }
}

/// The `Date` header's value for the current second, `Sun, 06 Nov 1994 08:49:37 GMT`.
///
/// Formatting a date is most of the cost of a small response's head, and the value changes
/// once a second: each thread keeps the last one it formatted and reuses it within the
/// same second.
fn http_date_now() -> [u8; HTTP_DATE_LEN] {
    use std::cell::Cell;
    thread_local! {
        static LAST: Cell<(u64, [u8; HTTP_DATE_LEN])> = const { Cell::new((u64::MAX, [0; HTTP_DATE_LEN])) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LAST.with(|last| {
        let (cached_second, cached) = last.get();
        if cached_second == second {
            return cached;
        }
        let mut value = [0; HTTP_DATE_LEN];
        // `HttpDate` always formats to exactly 29 bytes (RFC 9110 IMF-fixdate); were it ever
        // shorter, the rest stays zero and is trimmed when written.
        let _ = write!(&mut value[..], "{}", HttpDate::from(now));
        last.set((second, value));
        value
    })
}

/// Headers [`Response::add_header`] never keeps as given: they set the response's connection
/// or framing state (`Connection: close`, `Content-Length`) or are the library's own to write.
fn is_managed(field: &HeaderField) -> bool {
    is_managed_name(field.as_str().as_str())
}

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
const HTTP_DATE_LEN: usize = 29;

/// Writes `n` in decimal.
fn write_decimal<W: Write>(writer: &mut W, mut n: u64) -> IoResult<()> {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    writer.write_all(&digits[at..])
}

/// Whether a response with this status says how its body is framed (`Content-Length`,
/// `Transfer-Encoding`). Not 1xx or 204, which never have a body (RFC 9110 §8.6, RFC 9112
/// §6.1), nor 304: it has none either, and a `Content-Length` there would have to be the
/// length of the 200 it stands for, which an empty body does not give.
fn has_framing(status: StatusCode) -> bool {
    !matches!(status.0, 0..=199 | 204 | 304)
}

/// Writes one `name: value` header line.
fn write_header_line<W: Write>(writer: &mut W, name: &[u8], value: &[u8]) -> IoResult<()> {
    writer.write_all(name)?;
    writer.write_all(b": ")?;
    writer.write_all(value)?;
    writer.write_all(b"\r\n")
}

/// The status line, `HTTP/1.1 200 OK`.
fn write_status_line<W: Write>(
    writer: &mut W,
    http_version: &HTTPVersion,
    status_code: &StatusCode,
) -> IoResult<()> {
    // The common line's numbers as one piece of known length (this runs for every response).
    match (http_version, status_code.0) {
        (HTTPVersion(1, minor @ 0..=1), code @ 100..=999) => {
            let [d0, d1, d2] = [code / 100, code / 10 % 10, code % 10].map(|d| b'0' + d as u8);
            writer.write_all(&[
                b'H',
                b'T',
                b'T',
                b'P',
                b'/',
                b'1',
                b'.',
                b'0' + minor,
                b' ',
                d0,
                d1,
                d2,
                b' ',
            ])?;
        }
        _ => {
            writer.write_all(b"HTTP/")?;
            write_decimal(writer, u64::from(http_version.0))?;
            writer.write_all(b".")?;
            write_decimal(writer, u64::from(http_version.1))?;
            writer.write_all(b" ")?;
            write_decimal(writer, u64::from(status_code.0))?;
            writer.write_all(b" ")?;
        }
    }
    writer.write_all(status_code.default_reason_phrase().as_bytes())?;
    writer.write_all(b"\r\n")
}

/// Whether a header given to [`crate::Request::respond_bytes`] can be written as it is: a
/// token for a name, visible ASCII (and spaces, tabs) for a value, and not one the library
/// manages. Anything else takes the general path through [`Response::new`].
pub(crate) fn is_plain_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(crate::head::is_tchar)
        && is_plain_value(value.as_bytes())
        && !is_managed_name(name)
}

/// Every byte visible ASCII, a space or a tab. Eight bytes at a time: this runs over every
/// header value of every response on the fast path (a request id, a content type), and the
/// byte loop was a quarter of what answering a probe cost outside the kernel.
fn is_plain_value(value: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let plain = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b);
    let mut chunks = value.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // A high bit in `below` or `above` marks a byte that may be below 0x20 or above 0x7e
        // (the borrows and carries between bytes only ever add marks after a marked byte);
        // such a chunk (a tab, or a byte that is not plain) is looked at byte by byte.
        let below = x.wrapping_sub(ONES * 0x20) & !x;
        let above = x.wrapping_add(ONES) | x;
        if (below | above) & HIGH != 0 && !chunk.iter().all(|&b| plain(b)) {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| plain(b))
}

/// The names [`is_managed`] matches, tested by length first (this runs for every header of
/// every response on the fast path).
fn is_managed_name(name: &str) -> bool {
    let is = |m: &str| m.eq_ignore_ascii_case(name);
    match name.len() {
        7 => is("Trailer") || is("Upgrade"),
        10 => is("Connection"),
        14 => is("Content-Length"),
        17 => is("Transfer-Encoding"),
        _ => false,
    }
}

/// Whether a response of `length` bytes to this request goes out as it is, with a
/// `Content-Length` (rather than chunked): what [`Response::raw_print_conn`] decides for a
/// body of known length under the default chunked threshold.
pub(crate) fn is_identity(
    status: StatusCode,
    request_headers: &[Header],
    http_version: &HTTPVersion,
    length: usize,
) -> bool {
    matches!(
        choose_transfer_encoding(
            status,
            request_headers,
            http_version,
            &Some(length),
            false,
            DEFAULT_CHUNKED_THRESHOLD,
        ),
        TransferEncoding::Identity
    )
}

/// `Server` and `Date`, the headers the library adds unless the response has its own.
fn write_default_headers<W: Write>(writer: &mut W, own: OwnHeaders) -> IoResult<()> {
    if !own.server {
        write_header_line(writer, b"Server", b"tiny-http (Rust)")?;
    }
    if !own.date {
        let date = http_date_now();
        let len = date.iter().position(|&b| b == 0).unwrap_or(date.len());
        write_header_line(writer, b"Date", &date[..len])?;
    }
    Ok(())
}

/// Which of the headers the library adds by default a response brings itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OwnHeaders {
    pub(crate) server: bool,
    pub(crate) date: bool,
}

/// Renders a whole response with an in-memory body into `out`, byte for byte what
/// [`Response::raw_print_conn`] writes for the same status, headers and body sent with a
/// `Content-Length` (the caller checked [`is_identity`] and [`is_plain_header`], and found
/// which of `Server` and `Date` the headers hold: `own`).
///
/// The head is assembled in a buffer on the stack ([`StackHead`]) and appended in one piece;
/// a head too long for it is written into `out` directly.
#[allow(clippy::too_many_arguments)]
pub(crate) fn render_identity<'h>(
    out: &mut Vec<u8>,
    http_version: &HTTPVersion,
    status: StatusCode,
    headers: impl Iterator<Item = (&'h str, &'h str)> + Clone,
    own: OwnHeaders,
    body: &[u8],
    do_not_send_body: bool,
    conn: ConnHeader,
) {
    let framing = HeadFraming {
        status,
        own,
        conn,
        length: body.len(),
    };
    // A HEAD request's answer, and these statuses, carry the length but not the body.
    let no_body = do_not_send_body || matches!(status.0, 100..=199 | 204 | 304);
    let body = if no_body { &[][..] } else { body };
    let mut head = StackHead::new();
    if write_identity_head(&mut head, http_version, headers.clone(), framing).is_ok() {
        out.reserve(head.len + body.len());
        out.extend_from_slice(head.as_bytes());
    } else {
        // Writes into a `Vec` cannot fail.
        let _ = write_identity_head(out, http_version, headers, framing);
    }
    out.extend_from_slice(body);
}

/// What [`write_identity_head`] needs besides the headers.
#[derive(Clone, Copy)]
struct HeadFraming {
    status: StatusCode,
    own: OwnHeaders,
    conn: ConnHeader,
    /// The body's length (for `Content-Length`).
    length: usize,
}

/// The head [`render_identity`] sends, up to and including the blank line.
fn write_identity_head<'h, W: Write>(
    out: &mut W,
    http_version: &HTTPVersion,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
    framing: HeadFraming,
) -> IoResult<()> {
    let HeadFraming {
        status,
        own,
        conn,
        length,
    } = framing;
    write_status_line(out, http_version, &status)?;
    write_default_headers(out, own)?;
    for (name, value) in headers {
        write_header_line(out, name.as_bytes(), value.as_bytes())?;
    }
    if !conn.value().is_empty() {
        write_header_line(out, b"Connection", conn.value())?;
    }
    if has_framing(status) {
        out.write_all(b"Content-Length: ")?;
        write_decimal(out, length as u64)?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"\r\n")
}

/// Bytes of a response head [`StackHead`] holds; longer heads take the `Vec` path.
const STACK_HEAD_LEN: usize = 512;

/// A response head assembled on the stack.
///
/// Why: the head is a dozen short pieces (`HTTP/`, `1.1`, `: `, `\r\n`, names and values).
/// Appended to a `Vec` one by one, each is a call that checks the capacity and then calls
/// `memcpy`, and the static build (opt-level `s`) inlines neither; here a piece of known
/// length is a store or two, and the whole head reaches the `Vec` in one copy
/// (BENCHMARKS.md, "Static binary").
struct StackHead {
    bytes: [u8; STACK_HEAD_LEN],
    len: usize,
}

impl StackHead {
    fn new() -> StackHead {
        StackHead {
            bytes: [0; STACK_HEAD_LEN],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Write for StackHead {
    #[inline(always)]
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    /// All of `buf`, or nothing and an error when it does not fit.
    #[inline(always)]
    fn write_all(&mut self, buf: &[u8]) -> IoResult<()> {
        let end = self.len + buf.len();
        match self.bytes.get_mut(self.len..end) {
            Some(room) => {
                room.copy_from_slice(buf);
                self.len = end;
                Ok(())
            }
            None => Err(io::ErrorKind::WriteZero.into()),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        Ok(())
    }
}

/// Bodies from this length on are sent chunked unless a response sets its own threshold.
const DEFAULT_CHUNKED_THRESHOLD: usize = 32768;

fn choose_transfer_encoding(
    status_code: StatusCode,
    request_headers: &[Header],
    http_version: &HTTPVersion,
    entity_length: &Option<usize>,
    has_additional_headers: bool,
    chunked_threshold: usize,
) -> TransferEncoding {
    use crate::util;

    // HTTP 1.0 doesn't support other encoding
    if *http_version <= (1, 0) {
        return TransferEncoding::Identity;
    }

    // Per section 3.3.1 of RFC7230:
    // A server MUST NOT send a Transfer-Encoding header field in any response with a status code
    // of 1xx (Informational) or 204 (No Content).
    if !has_framing(status_code) {
        return TransferEncoding::Identity;
    }

    // parsing the request's TE header
    let user_request = request_headers
        .iter()
        // finding TE
        .find(|h| h.field.equiv("TE"))
        // getting its value
        .map(|h| h.value.clone())
        // getting the corresponding TransferEncoding
        .and_then(|value| {
            // getting list of requested elements
            let mut parse = util::parse_header_value(value.as_str()); // TODO: remove conversion

            // sorting elements by most priority
            parse.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal));

            // trying to parse each requested encoding
            for value in parse.iter() {
                // q=0 are ignored
                if value.1 <= 0.0 {
                    continue;
                }

                if let Ok(te) = TransferEncoding::from_str(value.0) {
                    return Some(te);
                }
            }

            // encoding not found
            None
        });

    if let Some(user_request) = user_request {
        return user_request;
    }

    // if we have additional headers, using chunked
    if has_additional_headers {
        return TransferEncoding::Chunked;
    }

    // if we don't have a Content-Length, or if the Content-Length is too big, using chunks writer
    if entity_length.is_none_or(|val| val >= chunked_threshold) {
        return TransferEncoding::Chunked;
    }

    // Identity by default
    TransferEncoding::Identity
}

impl<R> Response<R>
where
    R: Read,
{
    /// Creates a new Response object.
    ///
    /// The `additional_headers` argument is a receiver that
    ///  may provide headers even after the response has been sent.
    ///
    /// All the other arguments are straight-forward.
    pub fn new(
        status_code: StatusCode,
        headers: Vec<Header>,
        data: R,
        data_length: Option<usize>,
        additional_headers: Option<Receiver<Header>>,
    ) -> Response<R> {
        let mut response = Response {
            reader: data,
            status_code,
            headers: Vec::new(),
            data_length,
            chunked_threshold: None,
            close: false,
        };

        // The usual case: no header `add_header` would drop, rewrite or merge. The caller's
        // vector is kept as it is, without copying it into a new one.
        let content_types = headers
            .iter()
            .filter(|h| h.field.equiv("Content-Type"))
            .count();
        let plain = content_types <= 1 && !headers.iter().any(|h| is_managed(&h.field));
        if plain {
            response.headers = headers;
        } else {
            for h in headers {
                response.add_header(h)
            }
        }

        // dummy implementation
        if let Some(additional_headers) = additional_headers {
            for h in additional_headers.iter() {
                response.add_header(h)
            }
        }

        response
    }

    /// Set a threshold for `Content-Length` where we chose chunked
    /// transfer. Notice that chunked transfer might happen regardless of
    /// this threshold, for instance when the request headers indicate
    /// it is wanted or when there is no `Content-Length`.
    pub fn with_chunked_threshold(mut self, length: usize) -> Response<R> {
        self.chunked_threshold = Some(length);
        self
    }

    /// Convert the response into the underlying `Read` type.
    ///
    /// This is mainly useful for testing as it must consume the `Response`.
    pub fn into_reader(self) -> R {
        self.reader
    }

    /// The current `Content-Length` threshold for switching over to
    /// chunked transfer. The default is 32768 bytes. Notice that
    /// chunked transfer is mutually exclusive with sending a
    /// `Content-Length` header as per the HTTP spec.
    pub fn chunked_threshold(&self) -> usize {
        self.chunked_threshold.unwrap_or(DEFAULT_CHUNKED_THRESHOLD)
    }

    /// Adds a header to the list.
    /// Does all the checks.
    pub fn add_header<H>(&mut self, header: H)
    where
        H: Into<Header>,
    {
        let header = header.into();

        if is_managed(&header.field) {
            if header.field.equiv("Connection") {
                // `Connection: close` is honoured (see `wants_close`); other values are ignored
                if header
                    .value
                    .as_str()
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"))
                {
                    self.close = true;
                }
            } else if header.field.equiv("Content-Length") {
                // sets the data length
                if let Ok(val) = usize::from_str(header.value.as_str()) {
                    self.data_length = Some(val)
                }
            }
            // `Trailer`, `Transfer-Encoding`, `Upgrade`: ignored
            return;
        }

        // if the header is Content-Type and it's already set, overwrite it
        if header.field.equiv("Content-Type") {
            if let Some(content_type_header) = self
                .headers
                .iter_mut()
                .find(|h| h.field.equiv("Content-Type"))
            {
                content_type_header.value = header.value;
                return;
            }
        }

        self.headers.push(header);
    }

    /// Returns the same response, marked to be sent with `Connection: close`: the connection is
    /// closed after it.
    #[inline]
    pub fn with_connection_close(mut self) -> Response<R> {
        self.close = true;
        self
    }

    /// True if the response asked for `Connection: close`.
    #[inline]
    pub fn wants_close(&self) -> bool {
        self.close
    }

    /// Returns the same request, but with an additional header.
    ///
    /// Some headers cannot be modified and some other have a
    ///  special behavior. See the documentation above.
    #[inline]
    pub fn with_header<H>(mut self, header: H) -> Response<R>
    where
        H: Into<Header>,
    {
        self.add_header(header.into());
        self
    }

    /// Returns the same request, but with a different status code.
    #[inline]
    pub fn with_status_code<S>(mut self, code: S) -> Response<R>
    where
        S: Into<StatusCode>,
    {
        self.status_code = code.into();
        self
    }

    /// Returns the same request, but with different data.
    pub fn with_data<S>(self, reader: S, data_length: Option<usize>) -> Response<S>
    where
        S: Read,
    {
        Response {
            reader,
            headers: self.headers,
            status_code: self.status_code,
            data_length,
            chunked_threshold: self.chunked_threshold,
            close: self.close,
        }
    }

    /// Prints the HTTP response to a writer.
    ///
    /// This function is the one used to send the response to the client's socket.
    /// Therefore you shouldn't expect anything pretty-printed or even readable.
    ///
    /// The HTTP version and headers passed as arguments are used to
    ///  decide which features (most notably, encoding) to use.
    ///
    /// Note: does not flush the writer.
    pub fn raw_print<W: Write>(
        self,
        writer: W,
        http_version: HTTPVersion,
        request_headers: &[Header],
        do_not_send_body: bool,
        upgrade: Option<&str>,
    ) -> IoResult<()> {
        let conn = if self.close {
            ConnHeader::Close
        } else {
            ConnHeader::None
        };
        self.raw_print_conn(
            writer,
            http_version,
            request_headers,
            do_not_send_body,
            upgrade,
            conn,
        )
    }

    /// `raw_print` with the `Connection` header decided by the caller.
    pub(crate) fn raw_print_conn<W: Write>(
        mut self,
        mut writer: W,
        http_version: HTTPVersion,
        request_headers: &[Header],
        do_not_send_body: bool,
        upgrade: Option<&str>,
        conn: ConnHeader,
    ) -> IoResult<()> {
        let mut transfer_encoding = Some(choose_transfer_encoding(
            self.status_code,
            request_headers,
            &http_version,
            &self.data_length,
            false, /* TODO */
            self.chunked_threshold(),
        ));

        // Headers the library adds go straight to the writer, without building a `Header`
        // (two allocations each) or shifting the response's own: first the upgrade pair,
        // then `Server` and `Date` unless the response has its own, then the response's
        // headers, then `Connection`, then the framing header.
        let has_date = self.headers.iter().any(|h| h.field.equiv("Date"));
        let has_server = self.headers.iter().any(|h| h.field.equiv("Server"));
        let connection: &[u8] = match upgrade {
            Some(_) => b"",
            None => conn.value(),
        };
        if upgrade.is_some() {
            transfer_encoding = None;
        }

        // if the transfer encoding is identity, the content length must be known ; therefore if
        // we don't know it, we buffer the entire response first here
        // while this is an expensive operation, it is only ever needed for clients using HTTP 1.0
        let mut buffered = None;
        let data_length = match (self.data_length, transfer_encoding) {
            (Some(l), _) => Some(l),
            (None, Some(TransferEncoding::Identity)) => {
                let mut buf = Vec::new();
                self.reader.read_to_end(&mut buf)?;
                let l = buf.len();
                buffered = Some(Cursor::new(buf));
                Some(l)
            }
            _ => None,
        };
        let reader: &mut dyn Read = match &mut buffered {
            Some(buffered) => buffered,
            None => &mut self.reader,
        };

        // checking whether to ignore the body of the response
        let do_not_send_body = do_not_send_body
            || match self.status_code.0 {
                // status code 1xx, 204 and 304 MUST not include a body
                100..=199 | 204 | 304 => true,
                _ => false,
            };

        // sending the head
        write_status_line(&mut writer, &http_version, &self.status_code)?;
        if let Some(upgrade) = upgrade {
            write_header_line(&mut writer, b"Connection", b"upgrade")?;
            write_header_line(&mut writer, b"Upgrade", upgrade.as_bytes())?;
        }
        write_default_headers(
            &mut writer,
            OwnHeaders {
                server: has_server,
                date: has_date,
            },
        )?;
        for header in &self.headers {
            write_header_line(
                &mut writer,
                header.field.as_str().as_bytes(),
                header.value.as_bytes(),
            )?;
        }
        if !connection.is_empty() {
            write_header_line(&mut writer, b"Connection", connection)?;
        }
        match (transfer_encoding, data_length) {
            (Some(TransferEncoding::Chunked), _) => {
                write_header_line(&mut writer, b"Transfer-Encoding", b"chunked")?
            }
            (Some(TransferEncoding::Identity), Some(_)) if !has_framing(self.status_code) => {}
            (Some(TransferEncoding::Identity), Some(length)) => {
                writer.write_all(b"Content-Length: ")?;
                write_decimal(&mut writer, length as u64)?;
                writer.write_all(b"\r\n")?;
            }
            // Identity without a length cannot happen: an unknown length was buffered above.
            (Some(TransferEncoding::Identity), None) | (None, _) => (),
        }
        writer.write_all(b"\r\n")?;

        // sending the body
        if !do_not_send_body {
            match transfer_encoding {
                Some(TransferEncoding::Chunked) => {
                    let mut encoder = ChunkedEncoder {
                        inner: writer.by_ref(),
                    };
                    io::copy(reader, &mut encoder)?;
                    writer.write_all(b"0\r\n\r\n")?;
                }

                Some(TransferEncoding::Identity) if data_length.is_some_and(|l| l >= 1) => {
                    io::copy(reader, &mut writer)?;
                }

                _ => (),
            }
        }

        Ok(())
    }

    /// Retrieves the current value of the `Response` status code
    pub fn status_code(&self) -> StatusCode {
        self.status_code
    }

    /// Retrieves the current value of the `Response` data length
    pub fn data_length(&self) -> Option<usize> {
        self.data_length
    }

    /// Retrieves the current list of `Response` headers
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }
}

impl<R> Response<R>
where
    R: Read + Send + 'static,
{
    /// Turns this response into a `Response<Box<Read + Send>>`.
    pub fn boxed(self) -> ResponseBox {
        Response {
            reader: Box::new(self.reader) as Box<dyn Read + Send>,
            status_code: self.status_code,
            headers: self.headers,
            data_length: self.data_length,
            chunked_threshold: self.chunked_threshold,
            close: self.close,
        }
    }
}

impl Response<File> {
    /// Builds a new `Response` from a `File`.
    ///
    /// The `Content-Type` will **not** be automatically detected,
    ///  you must set it yourself.
    pub fn from_file(file: File) -> Response<File> {
        let file_size = file.metadata().ok().map(|v| v.len() as usize);

        Response::new(
            StatusCode(200),
            Vec::with_capacity(0),
            file,
            file_size,
            None,
        )
    }
}

impl Response<Cursor<Vec<u8>>> {
    pub fn from_data<D>(data: D) -> Response<Cursor<Vec<u8>>>
    where
        D: Into<Vec<u8>>,
    {
        let data = data.into();
        let data_len = data.len();

        Response::new(
            StatusCode(200),
            Vec::with_capacity(0),
            Cursor::new(data),
            Some(data_len),
            None,
        )
    }

    pub fn from_string<S>(data: S) -> Response<Cursor<Vec<u8>>>
    where
        S: Into<String>,
    {
        let data = data.into();
        let data_len = data.len();

        Response::new(
            StatusCode(200),
            vec![
                Header::from_bytes(&b"Content-Type"[..], &b"text/plain; charset=UTF-8"[..])
                    .unwrap(),
            ],
            Cursor::new(data.into_bytes()),
            Some(data_len),
            None,
        )
    }
}

impl Response<io::Empty> {
    /// Builds an empty `Response` with the given status code.
    pub fn empty<S>(status_code: S) -> Response<io::Empty>
    where
        S: Into<StatusCode>,
    {
        Response::new(
            status_code.into(),
            Vec::with_capacity(0),
            io::empty(),
            Some(0),
            None,
        )
    }

    /// DEPRECATED. Use `empty` instead.
    pub fn new_empty(status_code: StatusCode) -> Response<io::Empty> {
        Response::empty(status_code)
    }
}

impl Clone for Response<io::Empty> {
    fn clone(&self) -> Response<io::Empty> {
        Response {
            reader: io::empty(),
            status_code: self.status_code,
            headers: self.headers.clone(),
            data_length: self.data_length,
            chunked_threshold: self.chunked_threshold,
            close: self.close,
        }
    }
}

#[cfg(test)]
mod head_tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn printed<R: Read>(response: Response<R>, version: HTTPVersion) -> String {
        let mut out = Vec::new();
        response
            .raw_print(&mut out, version, &[], false, None)
            .expect("print into a Vec");
        String::from_utf8(out).expect("ASCII head")
    }

    fn header<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        let head = &text[..text.find("\r\n\r\n").expect("end of head")];
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn a_small_response_has_its_status_line_headers_and_body() {
        let text = printed(
            Response::from_string("hi").with_header(
                Header::from_bytes(&b"X-Request-ID"[..], &b"abc"[..]).expect("header"),
            ),
            HTTPVersion(1, 1),
        );
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nhi"), "{text}");
        assert_eq!(header(&text, "Server"), ["tiny-http (Rust)"]);
        assert_eq!(header(&text, "X-Request-ID"), ["abc"]);
        assert_eq!(header(&text, "Content-Length"), ["2"]);
        assert!(header(&text, "Connection").is_empty(), "{text}");
        let date = header(&text, "Date");
        assert_eq!(date.len(), 1, "{text}");
        let sent = httpdate::parse_http_date(date[0]).expect("an IMF-fixdate");
        let age = SystemTime::now().duration_since(sent).unwrap_or_default();
        assert!(age < Duration::from_secs(5), "{date:?}");
    }

    #[test]
    fn no_content_and_not_modified_have_no_framing_nor_body() {
        for (status, line) in [(204, " 204 No Content\r\n"), (304, " 304 Not Modified\r\n")] {
            for version in [HTTPVersion(1, 0), HTTPVersion(1, 1)] {
                let text = printed(Response::empty(status), version.clone());
                assert!(text.contains(line), "{text}");
                assert!(header(&text, "Content-Length").is_empty(), "{text}");
                assert!(header(&text, "Transfer-Encoding").is_empty(), "{text}");
                assert!(text.ends_with("\r\n\r\n"), "{text}");
                // A body given by mistake is not sent either.
                let text = printed(
                    Response::from_data(b"x".to_vec()).with_status_code(status),
                    version,
                );
                assert!(header(&text, "Content-Length").is_empty(), "{text}");
                assert!(text.ends_with("\r\n\r\n"), "{text}");
            }
        }
        // Other empty answers keep theirs.
        let text = printed(Response::empty(200), HTTPVersion(1, 1));
        assert_eq!(header(&text, "Content-Length"), ["0"]);
    }

    #[test]
    fn reason_phrases_are_rfc_9110s() {
        for (status, phrase) in [
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (422, "Unprocessable Content"),
        ] {
            let text = printed(Response::empty(status), HTTPVersion(1, 1));
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status} {phrase}\r\n")),
                "{text}"
            );
        }
    }

    #[test]
    fn a_response_with_its_own_date_and_server_gets_no_second() {
        let text = printed(
            Response::empty(204)
                .with_header(
                    Header::from_bytes(&b"Date"[..], &b"Sun, 06 Nov 1994 08:49:37 GMT"[..])
                        .expect("header"),
                )
                .with_header(Header::from_bytes(&b"Server"[..], &b"usersvc"[..]).expect("header")),
            HTTPVersion(1, 1),
        );
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
        assert_eq!(header(&text, "Date"), ["Sun, 06 Nov 1994 08:49:37 GMT"]);
        assert_eq!(header(&text, "Server"), ["usersvc"]);
    }

    #[test]
    fn the_cached_date_follows_the_clock() {
        let first = http_date_now();
        let first_second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Wait for the next second, then ask again on the same thread.
        while SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            == first_second
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = http_date_now();
        let parse = |v: &[u8]| {
            httpdate::parse_http_date(std::str::from_utf8(v).expect("ASCII")).expect("date")
        };
        assert!(parse(&second) > parse(&first));
    }

    #[test]
    fn an_http_1_0_response_of_unknown_length_is_buffered_and_measured() {
        let body = Cursor::new(b"hello".to_vec());
        let text = printed(
            Response::new(StatusCode(200), Vec::new(), body, None, None),
            HTTPVersion(1, 0),
        );
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        assert_eq!(header(&text, "Content-Length"), ["5"]);
        assert!(header(&text, "Transfer-Encoding").is_empty());
        assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    }

    #[test]
    fn headers_given_to_new_keep_add_header_rules() {
        let h = |n: &str, v: &str| Header::from_bytes(n.as_bytes(), v.as_bytes()).expect("header");
        // Plain headers are kept as given, in order.
        let plain = Response::new(
            StatusCode(200),
            vec![
                h("Content-Type", "text/plain"),
                h("X-A", "1"),
                h("X-A", "2"),
            ],
            Cursor::new(b"x".to_vec()),
            Some(1),
            None,
        );
        let names: Vec<_> = plain
            .headers()
            .iter()
            .map(|h| h.value.to_string())
            .collect();
        assert_eq!(names, ["text/plain", "1", "2"]);
        // The rest still go through `add_header`: the last Content-Type wins, framing
        // headers are dropped, `Connection: close` becomes the close flag.
        let special = Response::new(
            StatusCode(200),
            vec![
                h("Content-Type", "text/plain"),
                h("Content-Type", "application/json"),
                h("Transfer-Encoding", "chunked"),
                h("Connection", "close"),
            ],
            Cursor::new(b"{}".to_vec()),
            Some(2),
            None,
        );
        assert!(special.wants_close());
        let text = printed(special, HTTPVersion(1, 1));
        assert_eq!(header(&text, "Content-Type"), ["application/json"]);
        assert!(header(&text, "Transfer-Encoding").is_empty(), "{text}");
        assert_eq!(header(&text, "Content-Length"), ["2"]);
    }

    #[test]
    fn status_lines() {
        for (version, code, line) in [
            (HTTPVersion(1, 1), 200, "HTTP/1.1 200 OK\r\n"),
            (HTTPVersion(1, 0), 404, "HTTP/1.0 404 Not Found\r\n"),
            (HTTPVersion(1, 1), 100, "HTTP/1.1 100 Continue\r\n"),
            (HTTPVersion(1, 1), 999, "HTTP/1.1 999 Unknown\r\n"),
            (HTTPVersion(2, 0), 200, "HTTP/2.0 200 OK\r\n"),
            (HTTPVersion(1, 1), 1000, "HTTP/1.1 1000 Unknown\r\n"),
            (HTTPVersion(1, 1), 99, "HTTP/1.1 99 Unknown\r\n"),
        ] {
            let mut out = Vec::new();
            write_status_line(&mut out, &version, &StatusCode(code)).expect("written");
            assert_eq!(String::from_utf8_lossy(&out), line);
        }
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 4096, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n).expect("into a Vec");
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}

/// `render_identity` (the `Request::respond_bytes` fast path) writes exactly what the general
/// path writes for the same response.
#[cfg(test)]
mod render_identity_tests {
    use super::*;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn general(
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        version: HTTPVersion,
        head_request: bool,
        conn: ConnHeader,
    ) -> Vec<u8> {
        let hs = headers
            .iter()
            .map(|(n, v)| Header::from_bytes(n.as_bytes(), v.as_bytes()).expect("header"))
            .collect();
        let mut out = Vec::new();
        Response::new(
            StatusCode(status),
            hs,
            Cursor::new(body.to_vec()),
            Some(body.len()),
            None,
        )
        .raw_print_conn(&mut out, version, &[], head_request, None, conn)
        .expect("print into a Vec");
        out
    }

    fn fast(
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        version: HTTPVersion,
        head_request: bool,
        conn: ConnHeader,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let own = OwnHeaders {
            server: has("Server"),
            date: has("Date"),
        };
        render_identity(
            &mut out,
            &version,
            StatusCode(status),
            headers.iter().copied(),
            own,
            body,
            head_request,
            conn,
        );
        out
    }

    #[test]
    fn byte_for_byte_the_general_path() {
        let json = [
            ("Date", DATE),
            ("Content-Type", "application/json"),
            ("X-Request-ID", "abc-123"),
        ];
        let with_server = [("Date", DATE), ("Server", "usersvc"), ("ETag", "\"1\"")];
        // Longer than the stack buffer: the head goes straight into the `Vec`.
        let long_value = "v".repeat(STACK_HEAD_LEN);
        let long = [
            ("Content-Type", "text/plain"),
            ("X-Long", long_value.as_str()),
        ];
        type Case<'a> = (u16, &'a [(&'a str, &'a str)], &'a [u8]);
        let cases: &[Case<'_>] = &[
            (200, &json, b"{\"id\":1}"),
            (201, &json, b"{}"),
            (204, &json, b""),
            (304, &json, b""),
            (404, &with_server, b"not here"),
            (503, &json, b""),
            (200, &[("Date", DATE)], b""),
            (200, &long, b"long head"),
            (304, &long, b""),
        ];
        for &(status, headers, body) in cases {
            for version in [HTTPVersion(1, 1), HTTPVersion(1, 0)] {
                for head_request in [false, true] {
                    for conn in [ConnHeader::None, ConnHeader::Close, ConnHeader::KeepAlive] {
                        let want =
                            general(status, headers, body, version.clone(), head_request, conn);
                        let got = fast(status, headers, body, version.clone(), head_request, conn);
                        assert_eq!(
                            String::from_utf8_lossy(&got),
                            String::from_utf8_lossy(&want),
                            "{status} {headers:?} {version:?} head={head_request} {conn:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_date_and_a_server_are_added_when_missing() {
        let out = fast(
            200,
            &[("X-Request-ID", "a")],
            b"ok",
            HTTPVersion(1, 1),
            false,
            ConnHeader::None,
        );
        let text = String::from_utf8(out).expect("ASCII");
        assert!(text.contains("\r\nServer: tiny-http (Rust)\r\n"), "{text}");
        assert!(text.contains("\r\nDate: "), "{text}");
        assert!(text.ends_with("Content-Length: 2\r\n\r\nok"), "{text}");
    }

    #[test]
    fn only_plain_headers_take_the_fast_path() {
        assert!(is_plain_header("Content-Type", "application/json"));
        // Every byte value at every position of a value long enough for two whole words and
        // a remainder, against the byte-by-byte rule.
        for b in 0..=255u8 {
            for at in 0..19 {
                let mut value = *b"0123456789abcdefxyz";
                value[at] = b;
                let want = b == b'\t' || (b' '..=b'~').contains(&b);
                assert_eq!(is_plain_value(&value), want, "byte {b:#04x} at {at}");
            }
        }
        assert!(is_plain_header("Retry-After", "1"));
        assert!(is_plain_header("X-A", "a\tb c"));
        assert!(!is_plain_header("", "x"));
        assert!(!is_plain_header("Bad Name", "x"));
        assert!(!is_plain_header("X-A", "line\r\nbreak"));
        assert!(!is_plain_header("X-A", "caf\u{e9}"));
        assert!(!is_plain_header("content-length", "3"));
        assert!(!is_plain_header("Connection", "close"));
    }

    #[test]
    fn large_bodies_and_te_requests_are_not_identity() {
        let v11 = HTTPVersion(1, 1);
        assert!(is_identity(StatusCode(200), &[], &v11, 10));
        assert!(!is_identity(StatusCode(200), &[], &v11, 40_000));
        assert!(is_identity(
            StatusCode(200),
            &[],
            &HTTPVersion(1, 0),
            40_000
        ));
        let te = [Header::from_bytes(&b"TE"[..], &b"chunked"[..]).expect("header")];
        assert!(!is_identity(StatusCode(200), &te, &v11, 10));
    }
}
