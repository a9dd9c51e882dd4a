//! A plain HTTP/1.1 GET, for the controllers' `/readyz` and `/metrics`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Error, poll_until};

/// GET `path` from `addr`; (status line, body).
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        Ok((
            head.lines().next().unwrap_or_default().to_owned(),
            body.to_owned(),
        ))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Waits until `addr` answers `path` with 200; returns the body.
pub async fn wait_ok(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, Error> {
    poll_until(
        &format!("GET http://{addr}{path} to answer 200"),
        timeout,
        Duration::from_millis(100),
        || async move {
            match get(addr, path).await {
                Ok((status, body)) if status.contains(" 200 ") => Ok(body),
                Ok((status, _)) => Err(status),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}
