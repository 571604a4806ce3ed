//! A deliberately broken "BMC" for client robustness tests: it speaks raw HTTP/1.1 over plain TCP so it can lie
//! in ways a well-behaved server library would not let it (a declared 2 GB body, an endless body, a malformed
//! status line).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with JSON that is not an object.
    NotAnObject,
    /// 200 declaring a 2 GiB `Content-Length`, then a few bytes.
    DeclaredHugeBody,
    /// 200 with a chunked body that goes on (up to 64 MiB, then stops) without a length.
    EndlessBody,
    /// 302 to another address.
    Redirect,
    /// Accepts the connection and closes it without answering.
    CloseImmediately,
    /// Answers with bytes that are not HTTP.
    MalformedHttp,
    /// Reads the request and never answers.
    Silent,
}

/// A running hostile server. Dropping it stops it.
#[derive(Debug)]
pub struct HostileServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    cancel: CancellationToken,
}

impl HostileServer {
    /// Binds port 0 on loopback and starts misbehaving.
    pub async fn start(hostility: Hostility) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                if let Ok((stream, _)) = accepted {
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = misbehave(stream, hostility) => {}
                        }
                    });
                }
            }
        });
        Ok(HostileServer { url, cancel })
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Reads one request head (bounded), so the client sees its request consumed.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

async fn misbehave(mut stream: TcpStream, hostility: Hostility) -> std::io::Result<()> {
    if hostility == Hostility::CloseImmediately {
        return Ok(());
    }
    read_head(&mut stream).await?;
    let simple = |status: &str, extra: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    match hostility {
        Hostility::Garbage => stream.write_all(simple("200 OK", "", "<html>not json</html>").as_bytes()).await?,
        Hostility::NotAnObject => stream.write_all(simple("200 OK", "", "[1,2,3]").as_bytes()).await?,
        Hostility::Redirect => {
            let extra = "Location: http://127.0.0.2:1/redfish/v1/\r\n";
            stream.write_all(simple("302 Found", extra, "").as_bytes()).await?
        }
        Hostility::DeclaredHugeBody => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2147483648\r\n\r\n{\"a\":")
                .await?
        }
        Hostility::EndlessBody => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await?;
            let chunk = vec![b' '; 65536];
            let header = format!("{:x}\r\n", chunk.len());
            // Bounded: 1024 chunks of 64 KiB; the client is expected to give up long before.
            for _ in 0..1024 {
                stream.write_all(header.as_bytes()).await?;
                stream.write_all(&chunk).await?;
                stream.write_all(b"\r\n").await?;
            }
        }
        Hostility::MalformedHttp => stream.write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n").await?,
        Hostility::Silent => {
            // Hold the connection open without answering until the client gives up (read returns 0).
            let mut buf = [0u8; 1024];
            while stream.read(&mut buf).await? > 0 {}
        }
        Hostility::CloseImmediately => {}
    }
    stream.flush().await
}
