use ascii::{AsciiChar, AsciiStr, AsciiString, FromAsciiError};
use std::cmp::Ordering;
use std::fmt::{self, Display, Formatter};
use std::str::FromStr;
use std::sync::OnceLock;

/// Status code of a request or response.
#[derive(Eq, PartialEq, Copy, Clone, Debug, Ord, PartialOrd)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// Returns the default reason phrase for this status code.
    /// For example the status code 404 corresponds to "Not Found".
    ///
    /// The phrases are RFC 9110's (§15): the one table of reason phrases, used for the status
    /// line and, by the application, as the title of its problem+json bodies.
    pub fn default_reason_phrase(&self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            102 => "Processing",
            103 => "Early Hints",

            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            203 => "Non-Authoritative Information",
            204 => "No Content",
            205 => "Reset Content",
            206 => "Partial Content",
            207 => "Multi-Status",
            208 => "Already Reported",
            226 => "IM Used",

            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            305 => "Use Proxy",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",

            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            417 => "Expectation Failed",
            421 => "Misdirected Request",
            422 => "Unprocessable Content",
            423 => "Locked",
            424 => "Failed Dependency",
            426 => "Upgrade Required",
            428 => "Precondition Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            451 => "Unavailable For Legal Reasons",

            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            506 => "Variant Also Negotiates",
            507 => "Insufficient Storage",
            508 => "Loop Detected",
            510 => "Not Extended",
            511 => "Network Authentication Required",
            _ => "Unknown",
        }
    }
}

impl From<i8> for StatusCode {
    fn from(in_code: i8) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl From<u8> for StatusCode {
    fn from(in_code: u8) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl From<i16> for StatusCode {
    fn from(in_code: i16) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl From<u16> for StatusCode {
    fn from(in_code: u16) -> StatusCode {
        StatusCode(in_code)
    }
}

impl From<i32> for StatusCode {
    fn from(in_code: i32) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl From<u32> for StatusCode {
    fn from(in_code: u32) -> StatusCode {
        StatusCode(in_code as u16)
    }
}

impl AsRef<u16> for StatusCode {
    fn as_ref(&self) -> &u16 {
        &self.0
    }
}

impl PartialEq<u16> for StatusCode {
    fn eq(&self, other: &u16) -> bool {
        &self.0 == other
    }
}

impl PartialEq<StatusCode> for u16 {
    fn eq(&self, other: &StatusCode) -> bool {
        self == &other.0
    }
}

impl PartialOrd<u16> for StatusCode {
    fn partial_cmp(&self, other: &u16) -> Option<Ordering> {
        self.0.partial_cmp(other)
    }
}

impl PartialOrd<StatusCode> for u16 {
    fn partial_cmp(&self, other: &StatusCode) -> Option<Ordering> {
        self.partial_cmp(&other.0)
    }
}

/// Represents a HTTP header.
#[derive(Debug, Clone)]
pub struct Header {
    pub field: HeaderField,
    pub value: FieldValue,
}

/// Text that is held in place when it is short ASCII: up to
/// [`ShortText::INLINE`] bytes in the value itself (24 bytes, like a
/// `String`), anything else on the heap. Request targets and header values
/// are made on the I/O thread and freed on the worker that answers them;
/// held in place, the short ones (nearly all) cost no allocation made on one
/// thread and freed on another. Reading one back is free: the inline bytes
/// are [`AsciiChar`]s, text by their type, so no UTF-8 check runs on a read.
#[derive(Clone)]
pub(crate) enum ShortText {
    Inline {
        len: u8,
        bytes: [AsciiChar; ShortText::INLINE],
    },
    Heap(Box<str>),
}

impl ShortText {
    pub(crate) const INLINE: usize = 22;

    pub(crate) fn from_ascii(ascii: &AsciiStr) -> ShortText {
        let chars = ascii.as_slice();
        if chars.len() <= ShortText::INLINE {
            let mut inline = [AsciiChar::Null; ShortText::INLINE];
            inline[..chars.len()].copy_from_slice(chars);
            return ShortText::Inline {
                // At most INLINE (22): fits.
                len: chars.len() as u8,
                bytes: inline,
            };
        }
        ShortText::Heap(ascii.as_str().into())
    }

    /// `bytes` as they are when ASCII; else as UTF-8, invalid sequences as U+FFFD.
    pub(crate) fn from_bytes_lossy(bytes: &[u8]) -> ShortText {
        match AsciiStr::from_ascii(bytes) {
            Ok(ascii) => ShortText::from_ascii(ascii),
            Err(_) => ShortText::Heap(String::from_utf8_lossy(bytes).into()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            ShortText::Inline { len, bytes } => {
                <&AsciiStr>::from(&bytes[..usize::from(*len)]).as_str()
            }
            ShortText::Heap(s) => s,
        }
    }
}

impl fmt::Debug for ShortText {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A header's value, as a [`ShortText`]: a host, a content type or length,
/// `*/*`, `keep-alive` — nearly everything a request carries — is held in
/// place; a longer one (a browser's `User-Agent`, a `traceparent`), or one
/// with obs-text, on the heap.
#[derive(Clone)]
pub struct FieldValue(ShortText);

impl FieldValue {
    /// The longest value held inline.
    pub const INLINE: usize = ShortText::INLINE;

    /// The value, if `bytes` are ASCII.
    #[allow(clippy::result_unit_err)]
    pub fn from_ascii<B: AsRef<[u8]>>(bytes: B) -> Result<FieldValue, ()> {
        let ascii = AsciiStr::from_ascii(bytes.as_ref()).map_err(|_| ())?;
        Ok(FieldValue(ShortText::from_ascii(ascii)))
    }

    /// A received field value whose bytes passed the grammar check: ASCII
    /// as it is; obs-text (bytes 0x80–0xFF) kept where it is UTF-8 and
    /// replaced by U+FFFD where it is not. Nothing here interprets obs-text,
    /// and a field the service reads (`Content-Type`, `Idempotency-Key`, ...)
    /// is validated by its reader, which refuses non-ASCII.
    pub fn from_field_bytes(bytes: &[u8]) -> FieldValue {
        FieldValue(ShortText::from_bytes_lossy(bytes))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for FieldValue {
    fn eq(&self, other: &FieldValue) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for FieldValue {}

impl PartialEq<str> for FieldValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FieldValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Display for FieldValue {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Header {
    /// Builds a `Header` from two `Vec<u8>`s or two `&[u8]`s.
    ///
    /// Example:
    ///
    /// ```
    /// let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"text/plain"[..]).unwrap();
    /// ```
    #[allow(clippy::result_unit_err)]
    pub fn from_bytes<B1, B2>(header: B1, value: B2) -> Result<Header, ()>
    where
        B1: Into<Vec<u8>> + AsRef<[u8]>,
        B2: Into<Vec<u8>> + AsRef<[u8]>,
    {
        let header = HeaderField::from_bytes(header).or(Err(()))?;
        let value = FieldValue::from_ascii(value)?;

        Ok(Header {
            field: header,
            value,
        })
    }
}

impl FromStr for Header {
    type Err = ();

    fn from_str(input: &str) -> Result<Header, ()> {
        let mut elems = input.splitn(2, ':');

        let field = elems.next().and_then(|f| f.parse().ok()).ok_or(())?;
        let value = elems
            .next()
            .and_then(|v| FieldValue::from_ascii(v.trim()).ok())
            .ok_or(())?;

        Ok(Header { field, value })
    }
}

impl Display for Header {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}: {}", self.field, self.value.as_str())
    }
}

/// Field of a header (eg. `Content-Type`, `Content-Length`, etc.)
///
/// Comparison between two `HeaderField`s ignores case.
#[derive(Debug, Clone)]
pub struct HeaderField(FieldName);

impl Eq for HeaderField {}

/// A field name: one of the names nearly every request carries, spelled as
/// clients spell them, shared; or any other, owned. Reading a request head
/// thus allocates nothing for the name of a `Host` or `Content-Type` line.
#[derive(Debug, Clone)]
enum FieldName {
    Known(&'static AsciiStr),
    Other(AsciiString),
}

/// The shared names, exactly as common clients (curl, browsers, Go, Python,
/// wrk, Kubernetes probes) send them. A name spelled otherwise is owned:
/// `as_str` always gives the bytes the client sent.
const KNOWN_NAMES: [&str; 34] = [
    "Host",
    "host",
    "User-Agent",
    "user-agent",
    "Accept",
    "accept",
    "Accept-Encoding",
    "accept-encoding",
    "Accept-Language",
    "Content-Type",
    "content-type",
    "Content-Length",
    "content-length",
    "Connection",
    "connection",
    "Transfer-Encoding",
    "transfer-encoding",
    "Expect",
    "Authorization",
    "authorization",
    "Cache-Control",
    "Origin",
    "Referer",
    "Cookie",
    "traceparent",
    "tracestate",
    "X-Request-Id",
    "x-request-id",
    "X-Forwarded-For",
    "Idempotency-Key",
    "idempotency-key",
    "If-Match",
    "If-None-Match",
    "Keep-Alive",
];

/// [`KNOWN_NAMES`] as `AsciiString`s grouped by length (the index), built
/// once: a look-up compares a name with the two or three of its length.
fn known_names() -> &'static [Vec<AsciiString>] {
    static NAMES: OnceLock<Vec<Vec<AsciiString>>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let longest = KNOWN_NAMES.iter().map(|n| n.len()).max().unwrap_or(0);
        let mut by_len = vec![Vec::new(); longest + 1];
        for name in KNOWN_NAMES {
            if let Ok(ascii) = AsciiString::from_ascii(name) {
                by_len[name.len()].push(ascii);
            }
        }
        by_len
    })
}

impl HeaderField {
    pub fn from_bytes<B>(bytes: B) -> Result<HeaderField, FromAsciiError<B>>
    where
        B: Into<Vec<u8>> + AsRef<[u8]>,
    {
        if let Some(known) = HeaderField::known(bytes.as_ref()) {
            return Ok(known);
        }
        AsciiString::from_ascii(bytes).map(|s| HeaderField(FieldName::Other(s)))
    }

    /// The shared field for `name` when it is one of [`KNOWN_NAMES`], byte for byte.
    pub(crate) fn known(name: &[u8]) -> Option<HeaderField> {
        known_names()
            .get(name.len())?
            .iter()
            .find(|k| k.as_bytes() == name)
            .map(|k| HeaderField(FieldName::Known(k.as_ref())))
    }

    pub fn as_str(&self) -> &AsciiStr {
        match &self.0 {
            FieldName::Known(s) => s,
            FieldName::Other(s) => s,
        }
    }

    pub fn equiv(&self, other: &'static str) -> bool {
        other.eq_ignore_ascii_case(self.as_str().as_str())
    }
}

impl FromStr for HeaderField {
    type Err = ();

    fn from_str(s: &str) -> Result<HeaderField, ()> {
        if s.contains(char::is_whitespace) {
            Err(())
        } else {
            HeaderField::from_bytes(s).map_err(|_| ())
        }
    }
}

impl Display for HeaderField {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}", self.as_str().as_str())
    }
}

impl PartialEq for HeaderField {
    fn eq(&self, other: &HeaderField) -> bool {
        let self_str: &str = self.as_str().as_ref();
        let other_str = other.as_str().as_ref();
        self_str.eq_ignore_ascii_case(other_str)
    }
}

/// HTTP request methods
///
/// As per [RFC 7231](https://tools.ietf.org/html/rfc7231#section-4.1) and
/// [RFC 5789](https://tools.ietf.org/html/rfc5789)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,

    /// `HEAD`
    Head,

    /// `POST`
    Post,

    /// `PUT`
    Put,

    /// `DELETE`
    Delete,

    /// `CONNECT`
    Connect,

    /// `OPTIONS`
    Options,

    /// `TRACE`
    Trace,

    /// `PATCH`
    Patch,

    /// Request methods not standardized by the IETF
    NonStandard(AsciiString),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match *self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::NonStandard(ref s) => s.as_str(),
        }
    }
}

impl FromStr for Method {
    type Err = ();

    fn from_str(s: &str) -> Result<Method, ()> {
        Ok(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            s => {
                let ascii_string = AsciiString::from_ascii(s).map_err(|_| ())?;
                Method::NonStandard(ascii_string)
            }
        })
    }
}

impl Display for Method {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}", self.as_str())
    }
}

/// HTTP version (usually 1.0 or 1.1).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HTTPVersion(pub u8, pub u8);

impl Display for HTTPVersion {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}.{}", self.0, self.1)
    }
}

impl Ord for HTTPVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let HTTPVersion(my_major, my_minor) = *self;
        let HTTPVersion(other_major, other_minor) = *other;

        if my_major != other_major {
            return my_major.cmp(&other_major);
        }

        my_minor.cmp(&other_minor)
    }
}

impl PartialOrd for HTTPVersion {
    fn partial_cmp(&self, other: &HTTPVersion) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<(u8, u8)> for HTTPVersion {
    fn eq(&self, &(major, minor): &(u8, u8)) -> bool {
        self.eq(&HTTPVersion(major, minor))
    }
}

impl PartialEq<HTTPVersion> for (u8, u8) {
    fn eq(&self, other: &HTTPVersion) -> bool {
        let &(major, minor) = self;
        HTTPVersion(major, minor).eq(other)
    }
}

impl PartialOrd<(u8, u8)> for HTTPVersion {
    fn partial_cmp(&self, &(major, minor): &(u8, u8)) -> Option<Ordering> {
        self.partial_cmp(&HTTPVersion(major, minor))
    }
}

impl PartialOrd<HTTPVersion> for (u8, u8) {
    fn partial_cmp(&self, other: &HTTPVersion) -> Option<Ordering> {
        let &(major, minor) = self;
        HTTPVersion(major, minor).partial_cmp(other)
    }
}

impl From<(u8, u8)> for HTTPVersion {
    fn from((major, minor): (u8, u8)) -> HTTPVersion {
        HTTPVersion(major, minor)
    }
}

#[cfg(test)]
mod test {
    use super::{FieldValue, Header};
    use httpdate::HttpDate;
    use std::time::{Duration, SystemTime};

    #[test]
    fn test_parse_header() {
        let header: Header = "Content-Type: text/html".parse().unwrap();

        assert!(header.field.equiv("content-type"));
        assert!(header.value.as_str() == "text/html");

        assert!("hello world".parse::<Header>().is_err());
    }

    #[test]
    fn formats_date_correctly() {
        let http_date = HttpDate::from(SystemTime::UNIX_EPOCH + Duration::from_secs(420895020));

        assert_eq!(http_date.to_string(), "Wed, 04 May 1983 11:17:00 GMT")
    }

    #[test]
    fn test_parse_header_with_doublecolon() {
        let header: Header = "Time: 20: 34".parse().unwrap();

        assert!(header.field.equiv("time"));
        assert!(header.value.as_str() == "20: 34");
    }

    // This tests reslstance to RUSTSEC-2020-0031: "HTTP Request smuggling
    // through malformed Transfer Encoding headers"
    // (https://rustsec.org/advisories/RUSTSEC-2020-0031.html).
    #[test]
    fn test_strict_headers() {
        assert!("Transfer-Encoding : chunked".parse::<Header>().is_err());
        assert!(" Transfer-Encoding: chunked".parse::<Header>().is_err());
        assert!("Transfer Encoding: chunked".parse::<Header>().is_err());
        assert!(" Transfer\tEncoding : chunked".parse::<Header>().is_err());
        assert!("Transfer-Encoding: chunked".parse::<Header>().is_ok());
        assert!("Transfer-Encoding: chunked ".parse::<Header>().is_ok());
        assert!("Transfer-Encoding:   chunked ".parse::<Header>().is_ok());
    }

    /// Short values held inline and long ones on the heap read back the same;
    /// non-ASCII is refused.
    #[test]
    fn field_values_inline_and_on_the_heap() {
        for len in [
            0,
            1,
            FieldValue::INLINE - 1,
            FieldValue::INLINE,
            FieldValue::INLINE + 1,
            300,
        ] {
            let text: String = (0..len)
                .map(|i| char::from(b'!' + (i % 90) as u8))
                .collect();
            let v = FieldValue::from_ascii(&text).unwrap_or_else(|()| panic!("ascii"));
            assert_eq!(v.as_str(), text);
            assert_eq!(v.as_bytes(), text.as_bytes());
            assert!(v == text.as_str() && v == v.clone());
            assert_eq!(format!("{v}"), text);
            assert_eq!(format!("{v:?}"), format!("{text:?}"));
        }
        assert!(FieldValue::from_ascii("caf\u{e9}").is_err());
        assert!(FieldValue::from_ascii(b"\xff").is_err());
        assert!(std::mem::size_of::<FieldValue>() <= 24);
    }
}
