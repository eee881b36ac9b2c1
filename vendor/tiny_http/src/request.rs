use std::io::Error as IoError;
use std::io::{self, BufReader, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::body::{Body, BodyLimits};
use crate::common::ShortText;
use crate::conn::{ReqIo, ServerShared};
use crate::connection::Connection;
use crate::head::Head;
use crate::response::{is_identity, is_plain_header, render_identity, ConnHeader, OwnHeaders};
use crate::util::CustomStream;
use crate::{HTTPVersion, Header, Method, Response, StatusCode};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # One request at a time per connection
///
/// A connection reads its next request only once this one is finished: answered (or turned
/// into a writer / upgraded stream that was dropped, or dropped). Pipelined requests are
/// therefore answered one after the other, in order, and one client can never occupy more
/// than one thread answering requests.
///
/// # The body is already read
///
/// A request is dispatched once its whole body has arrived (or failed: timed out, too large,
/// malformed), read by the server's I/O thread within [`Limits`](crate::Limits); `as_reader`
/// reads it from memory and never waits for the client. Responding never waits for the client
/// either: the response is serialised into memory and written by the I/O thread.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where the body comes from and where the response goes; `None` once answered
    io: Option<Io>,

    remote_addr: Option<SocketAddr>,

    method: Method,

    /// Held in place when short (see [`ShortText`]).
    path: ShortText,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // returned by `as_reader` once the request is answered (never observable in practice)
    empty: io::Empty,
}

enum Io {
    /// A request read from a connection of a `Server`.
    Conn(ReqIo),
    /// A request built from arbitrary streams (`TestRequest`).
    Custom {
        reader: Box<dyn Read + Send + 'static>,
        writer: Box<dyn Write + Send + 'static>,
    },
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,
}

/// Decodes a body read from an arbitrary stream (used by `TestRequest`).
struct CustomBody<R: Read> {
    src: BufReader<R>,
    body: Body,
    line: Vec<u8>,
}

impl<R: Read> Read for CustomBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let lim = BodyLimits {
            max_body: u64::MAX,
            max_trailer_bytes: 64 * 1024,
            max_trailers: 1000,
        };
        self.body.read(&mut self.src, buf, &lim, &mut self.line)
    }
}

/// Builds a new request from arbitrary streams.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// The body is framed by the `Transfer-Encoding` (chunked) or `Content-Length` header.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub fn new_request<R, W>(
    _secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    source_data: R,
    writer: W,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let chunked = headers.iter().any(|h| h.field.equiv("Transfer-Encoding"));
    let content_length: Option<usize> = if chunked {
        None
    } else {
        headers
            .iter()
            .find(|h| h.field.equiv("Content-Length"))
            .and_then(|h| FromStr::from_str(h.value.as_str()).ok())
    };
    let expects_continue = match headers
        .iter()
        .find(|h| h.field.equiv("Expect"))
        .map(|h| h.value.as_str())
    {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
        _ => return Err(RequestCreationError::ExpectationFailed),
    };
    let body = if chunked {
        Body::chunked()
    } else {
        Body::length(content_length.unwrap_or(0) as u64)
    };
    let reader = CustomBody {
        src: BufReader::new(source_data),
        body,
        line: Vec::new(),
    };

    Ok(Request {
        io: Some(Io::Custom {
            reader: Box::new(reader),
            writer: Box::new(writer),
        }),
        remote_addr,
        method,
        path: ShortText::from_bytes_lossy(path.as_bytes()),
        http_version: version,
        headers,
        body_length: content_length,
        must_send_continue: expects_continue,
        empty: io::empty(),
    })
}

impl Request {
    /// Builds a request read from a connection; takes the connection's I/O state until the
    /// request is answered.
    pub(crate) fn from_conn(
        io: ReqIo,
        head: Head,
        content_length: Option<u64>,
        remote_addr: Option<SocketAddr>,
    ) -> Request {
        Request {
            io: Some(Io::Conn(io)),
            remote_addr,
            method: head.method,
            path: head.target,
            http_version: head.version,
            headers: head.headers,
            body_length: content_length.and_then(|n| usize::try_from(n).ok()),
            // The I/O thread sent `100 Continue` before it read the body.
            must_send_continue: false,
            empty: io::empty(),
        }
    }

    /// True when the client closed its connection (or it failed) after sending this request:
    /// nobody will read the response, so a queued request can be skipped. Always false for
    /// requests not read from a connection (`TestRequest`).
    pub fn client_gone(&self) -> bool {
        match &self.io {
            Some(Io::Conn(io)) => io.client_gone(),
            _ => false,
        }
    }

    /// Always false: this build has no TLS support (TLS is terminated in front of the server).
    #[inline]
    pub fn secure(&self) -> bool {
        false
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        self.path.as_str()
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// Each read of the returned stream waits at most the idle timeout. The connection is closed
    /// when the stream is dropped.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        match self.io.take() {
            Some(Io::Conn(io)) => {
                let mut bytes = Vec::new();
                let _ = response.raw_print_conn(
                    &mut bytes,
                    self.http_version.clone(),
                    &self.headers,
                    false,
                    Some(protocol),
                    ConnHeader::None,
                );
                let (rx, server) = io.detach(bytes);
                Box::new(ConnStream {
                    rx: Some(rx),
                    conn: None,
                    server,
                })
            }
            Some(Io::Custom { reader, mut writer }) => {
                let _ = response.raw_print(
                    writer.by_ref(),
                    self.http_version.clone(),
                    &self.headers,
                    false,
                    Some(protocol),
                );
                let _ = writer.flush();
                Box::new(CustomStream::new(reader, writer))
            }
            None => Box::new(CustomStream::new(io::empty(), io::sink())),
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    ///
    /// Reads fail with `ErrorKind::TimedOut` when the body is not complete within the read
    /// timeout (counted from the first read), and with an error recognised by
    /// [`is_body_too_large`](crate::is_body_too_large) when a chunked body exceeds the body
    /// limit. After a failed read the connection is closed after the response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            self.must_send_continue = false;
            const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
            match &mut self.io {
                // Sent by the I/O thread before it read the body.
                Some(Io::Conn(_)) => {}
                Some(Io::Custom { writer, .. }) => {
                    let _ = writer.write_all(CONTINUE).and_then(|()| writer.flush());
                }
                None => {}
            }
        }

        match &mut self.io {
            Some(Io::Conn(io)) => io,
            Some(Io::Custom { reader, .. }) => reader,
            None => &mut self.empty,
        }
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// What is written is buffered in memory and sent when the writer is dropped; the
    /// connection is closed after it.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        match self.io.take() {
            Some(Io::Conn(io)) => Box::new(RawWriter {
                io: Some(io),
                buf: Vec::new(),
            }),
            Some(Io::Custom { writer, .. }) => writer,
            None => Box::new(io::sink()),
        }
    }

    /// Sends a response to this request.
    ///
    /// The response carries `Connection: close` (and the connection closes after it) when the
    /// client asked for it, the response asked for it (`Connection: close` header), the server
    /// is draining, a body read failed, or the unread rest of the body is too large to drain.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    /// [`respond`](Request::respond) that leaves the request readable afterwards (its URL,
    /// method and headers, for a log line written after the response). Only the first
    /// response is sent; later calls do nothing.
    pub fn respond_in_place<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    /// Answers with a body already in memory: the head and the body are rendered into one
    /// buffer of the right size and handed over at once, with no [`Response`], no [`Header`]
    /// built per header and no copy through a reader. What goes on the wire is what
    /// [`Request::respond`] sends for `Response::new(status, headers, Cursor::new(body),
    /// Some(body.len()), None)`; headers that are not plain (see `is_plain_header`) or a body
    /// sent chunked take that general path.
    pub fn respond_bytes<'h, I>(
        &mut self,
        status: StatusCode,
        headers: I,
        body: Vec<u8>,
    ) -> Result<(), IoError>
    where
        I: Iterator<Item = (&'h str, &'h str)> + Clone,
    {
        // One pass over the headers for everything the fast path needs to know.
        let mut own = OwnHeaders::default();
        let mut content_types = 0;
        let mut all_plain = true;
        for (n, v) in headers.clone() {
            all_plain &= is_plain_header(n, v);
            match n.len() {
                4 if n.eq_ignore_ascii_case("Date") => own.date = true,
                6 if n.eq_ignore_ascii_case("Server") => own.server = true,
                12 if n.eq_ignore_ascii_case("Content-Type") => content_types += 1,
                _ => {}
            }
        }
        let plain = content_types <= 1
            && all_plain
            && is_identity(status, &self.headers, &self.http_version, body.len());
        if !plain {
            let headers = headers
                .filter_map(|(n, v)| Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
                .collect();
            let len = body.len();
            return self.respond_impl(Response::new(
                status,
                headers,
                io::Cursor::new(body),
                Some(len),
                None,
            ));
        }
        let do_not_send_body = self.method == Method::Head;
        let render = |out: &mut Vec<u8>, conn| {
            render_identity(
                out,
                &self.http_version,
                status,
                headers.clone(),
                own,
                &body,
                do_not_send_body,
                conn,
            )
        };
        let capacity = body.len() + 256;
        match self.io.take() {
            Some(Io::Conn(io)) => {
                let (close, conn) = self.connection_after(&io, false);
                let mut out = crate::scratch::take(capacity);
                render(&mut out, conn);
                io.finish(out, close);
                Ok(())
            }
            Some(Io::Custom { mut writer, .. }) => {
                let mut out = crate::scratch::take(capacity);
                render(&mut out, ConnHeader::None);
                let written = writer.write_all(&out);
                crate::scratch::give_back(out);
                Self::ignore_client_closing_errors(written)?;
                Self::ignore_client_closing_errors(writer.flush())
            }
            None => Ok(()),
        }
    }

    /// Whether the connection closes after this response, and the `Connection` header that
    /// says so: `close` when the request, the response (`wants_close`) or a draining server
    /// ends it; `keep-alive` to an HTTP/1.0 client that keeps it; none otherwise.
    fn connection_after(&self, io: &ReqIo, wants_close: bool) -> (bool, ConnHeader) {
        let close = io.close_after || wants_close || io.is_draining();
        let conn = if close {
            ConnHeader::Close
        } else if self.http_version == HTTPVersion(1, 0) {
            ConnHeader::KeepAlive
        } else {
            ConnHeader::None
        };
        (close, conn)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let do_not_send_body = self.method == Method::Head;
        match self.io.take() {
            Some(Io::Conn(io)) => {
                let (close, conn) = self.connection_after(&io, response.wants_close());
                let capacity = response.data_length().unwrap_or(0).saturating_add(256);
                let mut w = io.writer(capacity);
                let res = response.raw_print_conn(
                    &mut w,
                    self.http_version.clone(),
                    &self.headers,
                    do_not_send_body,
                    None,
                    conn,
                );
                // A response that failed half-way (its body reader, or the client went away or
                // stopped reading): what was produced is sent and the connection closed (its
                // framing cannot be trusted).
                w.finish(close || res.is_err());
                drop(io);
                Self::ignore_client_closing_errors(res)
            }
            Some(Io::Custom { mut writer, .. }) => {
                Self::ignore_client_closing_errors(response.raw_print(
                    writer.by_ref(),
                    self.http_version.clone(),
                    &self.headers,
                    do_not_send_body,
                    None,
                ))?;
                Self::ignore_client_closing_errors(writer.flush())
            }
            None => Ok(()),
        }
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }
}

/// The writer of `into_writer`: buffers, sends on drop, then the connection closes.
struct RawWriter {
    io: Option<ReqIo>,
    buf: Vec<u8>,
}

impl Write for RawWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RawWriter {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            io.finish(std::mem::take(&mut self.buf), true);
        }
    }
}

/// The socket of an upgraded connection, handed over by the I/O thread once the upgrade
/// response is written; blocking again. Reads wait at most the idle timeout, writes the write
/// timeout. Closed (and uncounted) when dropped.
struct ConnStream {
    rx: Option<std::sync::mpsc::Receiver<Connection>>,
    conn: Option<Connection>,
    server: std::sync::Arc<ServerShared>,
}

impl ConnStream {
    fn conn(&mut self) -> io::Result<&Connection> {
        if let Some(rx) = self.rx.take() {
            let timeout = self.server.limits.write_timeout;
            let conn = rx.recv_timeout(timeout).map_err(|_| {
                io::Error::new(ErrorKind::NotConnected, "the upgrade response was not sent")
            })?;
            conn.set_read_timeout(Some(self.server.limits.idle_timeout))?;
            conn.set_write_timeout(Some(self.server.limits.write_timeout))?;
            self.conn = Some(conn);
        }
        self.conn
            .as_ref()
            .ok_or_else(|| ErrorKind::NotConnected.into())
    }
}

fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == ErrorKind::WouldBlock {
        io::Error::new(ErrorKind::TimedOut, "upgraded connection timed out")
    } else {
        e
    }
}

impl Read for ConnStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut c = self.conn()?;
        c.read(buf).map_err(timed_out)
    }
}

impl Write for ConnStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = self.conn()?;
        c.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ConnStream {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            // Not used: wait for the hand-over so that the socket is closed, not leaked.
            if let Ok(conn) = rx.recv_timeout(self.server.limits.write_timeout) {
                self.conn = Some(conn);
            } else {
                return;
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
            drop(conn);
            self.server.conn_closed();
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method,
            self.path.as_str(),
            self.remote_addr
        )
    }
}

impl Request {
    /// Closes the connection without writing an answer: for a request that will never be
    /// answered (dropped unexecuted at a shutdown deadline), where the `500` that dropping it
    /// sends would tell its client something false.
    pub fn close_unanswered(mut self) {
        if let Some(Io::Conn(io)) = self.io.take() {
            io.finish(Vec::new(), true);
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.io.is_some() {
            let _ = self.respond_impl(Response::empty(500)); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
