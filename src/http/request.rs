//! One HTTP/1.x request head, parsed strictly and within limits, and the response to it.
//!
//! Only what a metrics endpoint needs: `GET` and `HEAD` without a body. Anything else is
//! answered with the status RFC 9110 names for it, never with a guess.

/// What a request head parses to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet (and within the size limit).
    Incomplete,
    /// A complete request: what to answer, and how many bytes of the buffer it used.
    Request(Request, usize),
    /// A request that cannot be served: the status, its reason, and that the connection must
    /// close (the stream's framing can no longer be trusted).
    Bad(u16, &'static str),
}

/// A request as far as the server needs it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, or another token (answered 405).
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// Whether the connection stays open after the response (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
}

/// Parses the head at the start of `buf`, refusing one longer than `max_bytes` or with more
/// than `max_headers` header lines.
pub fn parse(buf: &[u8], max_bytes: usize, max_headers: usize) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > max_bytes {
            return Parsed::Bad(431, "request head too large");
        }
        // A client may send LF-only lines; refuse rather than wait for a CRLF that never comes.
        if find(buf, b"\n\n").is_some() {
            return Parsed::Bad(400, "lines must end with CRLF");
        }
        return Parsed::Incomplete;
    };
    let used = end + 4;
    if used > max_bytes {
        return Parsed::Bad(431, "request head too large");
    }
    let Ok(head) = std::str::from_utf8(&buf[..end]) else { return Parsed::Bad(400, "request head is not UTF-8") };
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Bad(400, "malformed request line");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Parsed::Bad(400, "malformed method");
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Parsed::Bad(400, "malformed request target");
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Parsed::Bad(505, "only HTTP/1.0 and HTTP/1.1"),
        _ => return Parsed::Bad(400, "malformed HTTP version"),
    };
    let mut keep_alive = http11;
    let mut headers = 0;
    for h in lines {
        headers += 1;
        if headers > max_headers {
            return Parsed::Bad(431, "too many header fields");
        }
        let Some((name, value)) = h.split_once(':') else { return Parsed::Bad(400, "malformed header field") };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Parsed::Bad(400, "malformed header name");
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            if value != "0" {
                return Parsed::Bad(413, "no request body is accepted");
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad(413, "no request body is accepted");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    Parsed::Request(Request { method: method.to_string(), path, keep_alive }, used)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The reason phrase of a status this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A whole response: status line, headers and (unless `head_only`) the body.
pub fn response(status: u16, content_type: &str, body: &[u8], keep_alive: bool, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}{}\r\n",
        reason(status),
        body.len(),
        if status == 405 { "Allow: GET, HEAD\r\n" } else { "" },
        if keep_alive { "" } else { "Connection: close\r\n" },
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, keep_alive: bool) -> Request {
        Request { method: method.into(), path: path.into(), keep_alive }
    }

    #[test]
    fn requests_parse() {
        let r = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /";
        assert_eq!(parse(r, 8192, 10), Parsed::Request(req("GET", "/metrics", true), 38));
        assert_eq!(parse(b"GET / HTTP/1.0\r\n\r\n", 8192, 10), Parsed::Request(req("GET", "/", false), 18));
        let ka = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(matches!(parse(ka, 8192, 10), Parsed::Request(Request { keep_alive: true, .. }, _)));
        let close = b"HEAD / HTTP/1.1\r\nconnection: close\r\n\r\n";
        assert!(matches!(parse(close, 8192, 10), Parsed::Request(Request { keep_alive: false, .. }, _)));
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost:", 8192, 10), Parsed::Incomplete);
    }

    #[test]
    fn bad_requests_are_refused_with_their_status() {
        assert!(matches!(parse(b"\x00\x01garbage\r\n\r\n", 8192, 10), Parsed::Bad(400, _)));
        assert!(matches!(parse(b"GET /\r\n\r\n", 8192, 10), Parsed::Bad(400, _)));
        assert!(matches!(parse(b"GET / HTTP/2.0\r\n\r\n", 8192, 10), Parsed::Bad(505, _)));
        assert!(matches!(parse(b"get / HTTP/1.1\r\n\r\n", 8192, 10), Parsed::Bad(400, _)));
        assert!(matches!(parse(b"GET / HTTP/1.1\n\n", 8192, 10), Parsed::Bad(400, _)));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nX\r\n\r\n", 8192, 10), Parsed::Bad(400, _)));
        let post = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert!(matches!(parse(post, 8192, 10), Parsed::Bad(413, _)));
        let many: String = (0..11).map(|i| format!("X{i}: y\r\n")).collect();
        assert!(matches!(parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), 8192, 10), Parsed::Bad(431, _)));
        assert!(matches!(parse(&[b'a'; 9000], 8192, 10), Parsed::Bad(431, _)));
        assert_eq!(parse(&[b'a'; 8000], 8192, 10), Parsed::Incomplete);
    }

    #[test]
    fn responses_carry_length_and_connection() {
        let r = String::from_utf8(response(405, "text/plain", b"no", false, false)).unwrap();
        assert_eq!(
            r,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\nno"
        );
        let r = String::from_utf8(response(200, "t", b"body", true, true)).unwrap();
        assert!(r.ends_with("Content-Length: 4\r\n\r\n"), "{r}");
    }
}
