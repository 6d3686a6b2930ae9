//! A minimal HTTP/1.0 client over std sockets, enough for ClickHouse's `/ping` and DDL and for
//! titan's `/readyz`; it keeps reqwest (and with it tokio) out of xtask. HTTP/1.0 so that no
//! server answers with chunked encoding.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A response: status code and body text.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Sends one request to `addr` and reads the whole answer, within `timeout` per I/O call.
pub fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .context("setting a read timeout")?;
    stream
        .set_write_timeout(Some(timeout))
        .context("setting a write timeout")?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .with_context(|| format!("sending {method} {path} to {addr}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path} from {addr}"))?;
    parse(&raw).with_context(|| format!("answer to {method} {path} from {addr}"))
}

fn parse(raw: &[u8]) -> Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("malformed status line {status_line:?}");
    };
    if !version.starts_with("HTTP/") {
        bail!("malformed status line {status_line:?}");
    }
    let status = code
        .parse()
        .with_context(|| format!("malformed status code {code:?}"))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// POSTs a query to a ClickHouse HTTP endpoint and fails with the server's message unless 200.
pub fn clickhouse_query(port: u16, query: &str) -> Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let response = request("POST", addr, "/", query, Duration::from_secs(30))?;
    if response.status != 200 {
        bail!(
            "clickhouse rejected `{query}` ({}): {}",
            response.status,
            response.body.trim()
        );
    }
    Ok(response.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() -> Result<()> {
        let r = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nOk.\n")?;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "Ok.\n");
        Ok(())
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"").is_err());
        assert!(parse(b"SSH-2.0-OpenSSH\r\n").is_err());
    }
}
