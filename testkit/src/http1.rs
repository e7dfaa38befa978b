//! HTTP/1.1 on the wire, shared by the client and the echo server: a message head (start line and
//! header lines exactly as sent, duplicates and case kept), bodies by length, chunked or until close,
//! and the stream type that is either plain TCP or TLS.

use anyhow::{bail, Context, Result};
use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Longest accepted head (start line plus headers), so a broken peer cannot make us buffer forever.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A start line and the header lines that followed it, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub start_line: String,
    /// `(name, value)` as sent: the name's case kept, the value without surrounding whitespace.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first value of `name` (case-insensitive) among `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of `name` (case-insensitive) among `headers`, in order.
pub fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Reads one head. `Ok(None)` when the peer closed the connection before sending a byte of it (the
/// normal end of a keep-alive connection).
pub async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Head>> {
    let mut line = Vec::with_capacity(256);
    let mut total = 0;
    let mut head = Head::default();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).await?;
        if read == 0 {
            if total == 0 {
                return Ok(None);
            }
            bail!("connection closed inside a message head");
        }
        total += read;
        if total > MAX_HEAD_BYTES {
            bail!("message head longer than {MAX_HEAD_BYTES} bytes");
        }
        let text =
            std::str::from_utf8(trim_line_end(&line)).context("message head is not UTF-8")?;
        if head.start_line.is_empty() {
            if text.is_empty() {
                continue; // RFC 9112 2.2: ignore empty lines before the start line
            }
            head.start_line = text.to_owned();
        } else if text.is_empty() {
            return Ok(Some(head));
        } else {
            let (name, value) = text
                .split_once(':')
                .with_context(|| format!("header line without a colon: {text:?}"))?;
            head.headers
                .push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// How the body after a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

impl BodyFraming {
    /// The framing a request's headers announce (a request without either header has no body).
    pub fn of_request(headers: &[(String, String)]) -> Result<Self> {
        Self::announced(headers).map(|framing| framing.unwrap_or(BodyFraming::Empty))
    }

    /// The framing of a response to a request with `method`, given its status and headers.
    pub fn of_response(method: &str, status: u16, headers: &[(String, String)]) -> Result<Self> {
        if method.eq_ignore_ascii_case("HEAD")
            || status / 100 == 1
            || status == 204
            || status == 304
        {
            return Ok(BodyFraming::Empty);
        }
        Self::announced(headers).map(|framing| framing.unwrap_or(BodyFraming::UntilClose))
    }

    fn announced(headers: &[(String, String)]) -> Result<Option<Self>> {
        if header_values(headers, "transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return Ok(Some(BodyFraming::Chunked));
        }
        match header(headers, "content-length") {
            Some(length) => {
                let length = length
                    .parse()
                    .with_context(|| format!("bad content-length {length:?}"))?;
                Ok(Some(BodyFraming::Length(length)))
            }
            None => Ok(None),
        }
    }
}

/// Reads a body framed as `framing`, appending it to `body`.
pub async fn read_body<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    framing: BodyFraming,
    body: &mut Vec<u8>,
) -> Result<()> {
    match framing {
        BodyFraming::Empty => Ok(()),
        BodyFraming::Length(length) => read_exact_into(reader, length, body).await,
        BodyFraming::UntilClose => {
            reader.read_to_end(body).await?;
            Ok(())
        }
        BodyFraming::Chunked => {
            let mut line = Vec::with_capacity(32);
            loop {
                line.clear();
                reader.read_until(b'\n', &mut line).await?;
                let size_text = std::str::from_utf8(trim_line_end(&line))
                    .ok()
                    .and_then(|text| text.split(';').next())
                    .map(str::trim)
                    .unwrap_or_default();
                let size = usize::from_str_radix(size_text, 16)
                    .with_context(|| format!("bad chunk size line {line:?}"))?;
                if size == 0 {
                    // Trailers, then the empty line that ends the message.
                    while read_head_line(reader, &mut line).await? {}
                    return Ok(());
                }
                read_exact_into(reader, size, body).await?;
                line.clear();
                reader.read_until(b'\n', &mut line).await?;
            }
        }
    }
}

/// Reads one line; false when it was the empty line (or the stream ended).
async fn read_head_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> Result<bool> {
    line.clear();
    let read = reader.read_until(b'\n', line).await?;
    Ok(read > 0 && !trim_line_end(line).is_empty())
}

/// Appends `length` bytes; on a stream that ends or fails first, `body` keeps what arrived (what
/// a client of a reset stream received).
async fn read_exact_into<R: AsyncRead + Unpin>(
    reader: &mut R,
    length: usize,
    body: &mut Vec<u8>,
) -> Result<()> {
    body.reserve(length);
    let read = tokio::io::copy(&mut reader.take(length as u64), body)
        .await
        .with_context(|| format!("reading a body of {length} bytes"))?;
    if read < length as u64 {
        bail!("connection closed inside a body of {length} bytes, after {read}");
    }
    Ok(())
}

/// A TCP connection, plain or under TLS (client or server side).
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(wire: &[u8]) -> (Head, Vec<u8>) {
        let mut reader = tokio::io::BufReader::new(wire);
        let head = read_head(&mut reader).await.unwrap().unwrap();
        let framing = BodyFraming::of_request(&head.headers).unwrap();
        let mut body = Vec::new();
        read_body(&mut reader, framing, &mut body).await.unwrap();
        (head, body)
    }

    #[tokio::test]
    async fn keeps_names_case_order_and_duplicates() {
        let (head, body) = parse(b"GET / HTTP/1.1\r\nX-A: 1\r\nx-a:  2 \r\nHost: h\r\n\r\n").await;
        assert_eq!(head.start_line, "GET / HTTP/1.1");
        assert_eq!(
            head.headers,
            vec![
                ("X-A".to_string(), "1".to_string()),
                ("x-a".to_string(), "2".to_string()),
                ("Host".to_string(), "h".to_string()),
            ]
        );
        assert_eq!(header_values(&head.headers, "x-a"), ["1", "2"]);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn reads_chunked_and_length_bodies() {
        let (_, body) = parse(
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nt: 1\r\n\r\n",
        )
        .await;
        assert_eq!(body, b"abcde");
        let (_, body) = parse(b"POST / HTTP/1.1\r\ncontent-length: 4\r\n\r\nwxyz").await;
        assert_eq!(body, b"wxyz");
    }

    #[tokio::test]
    async fn a_closed_connection_is_no_head_and_a_cut_head_is_an_error() {
        let mut empty = tokio::io::BufReader::new(&b""[..]);
        assert!(read_head(&mut empty).await.unwrap().is_none());
        let mut cut = tokio::io::BufReader::new(&b"GET / HTTP/1.1\r\nhost"[..]);
        assert!(read_head(&mut cut).await.is_err());
    }

    #[test]
    fn response_framing() {
        let headers = vec![("Content-Length".to_string(), "5".to_string())];
        assert_eq!(
            BodyFraming::of_response("HEAD", 200, &headers).unwrap(),
            BodyFraming::Empty
        );
        assert_eq!(
            BodyFraming::of_response("GET", 200, &headers).unwrap(),
            BodyFraming::Length(5)
        );
        assert_eq!(
            BodyFraming::of_response("GET", 200, &[]).unwrap(),
            BodyFraming::UntilClose
        );
    }
}
