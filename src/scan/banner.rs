//! Reading the identification line an SSH server sends first.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// RFC 4253 allows a server to send other lines before `SSH-`; it caps the
/// identification line at 255 bytes. Read no more than this in all.
const MAX_PRELUDE: usize = 4096;

/// Reads the `SSH-2.0-...` line, or `None` if the peer sends something else
/// or nothing within `timeout`.
pub async fn read_ssh_banner(stream: &mut TcpStream, timeout: Duration) -> Option<String> {
    tokio::time::timeout(timeout, read_banner(stream))
        .await
        .ok()
        .flatten()
}

async fn read_banner(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if line.starts_with("SSH-") {
                return Some(line.chars().take(255).collect());
            }
        }
        if buf.len() > MAX_PRELUDE {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn banner_from(sent: &'static [u8]) -> Option<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            sock.write_all(sent).await.unwrap();
            // Hold the connection open, as a server waiting for our line would.
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let banner = read_ssh_banner(&mut stream, Duration::from_millis(500)).await;
        server.abort();
        banner
    }

    #[tokio::test]
    async fn reads_the_identification_line_after_a_prelude() {
        assert_eq!(
            banner_from(b"welcome\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                .await
                .as_deref(),
            Some("SSH-2.0-OpenSSH_9.2p1 Debian-2")
        );
    }

    #[tokio::test]
    async fn a_silent_or_foreign_service_gives_none() {
        assert_eq!(banner_from(b"").await, None);
        assert_eq!(banner_from(b"HTTP/1.1 400 Bad Request\r\n").await, None);
    }
}
