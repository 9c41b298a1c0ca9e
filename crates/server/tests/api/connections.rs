//! Connections and bodies have time limits and connections a cap, over real TCP sockets on 127.0.0.1
//! against a server configured with short limits. Each wait here is bounded by a guard far longer than the
//! limit it checks, so that a server that never closes fails the test instead of hanging it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Longer than any limit configured here: reaching it means the server did not act.
const GUARD: Duration = Duration::from_secs(10);

async fn short_limits(max_connections: usize) -> TestServer {
    TestServer::start_with(|c| {
        c.http.header_timeout_secs = 1;
        c.http.keep_alive_secs = 1;
        c.http.body_timeout_secs = 1;
        c.http.max_connections = max_connections;
    })
    .await
}

/// Reads until the server closes the connection; returns what it sent, or `None` if it kept the
/// connection open past the guard.
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(GUARD, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// Reads one response (head and a `Content-Length` body) off a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(GUARD, async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed before a whole response: {}", String::from_utf8_lossy(&received));
            received.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&received);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.parse().unwrap()))
                    .unwrap_or(0usize);
                if received.len() >= end + 4 + length {
                    break;
                }
            }
        }
    })
    .await
    .expect("a response within the guard");
    String::from_utf8(received).unwrap()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: plugwatch\r\n\r\n";

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed() {
    let server = short_limits(64).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: plugwatch\r\nX-Slow: ").await.unwrap();
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut kept).await.starts_with("HTTP/1.1 200"));

    assert!(read_until_closed(&mut idle).await.is_some(), "a connection that never sent a request is closed");
    assert!(read_until_closed(&mut half).await.is_some(), "a connection that never finished its head is closed");
    assert_eq!(read_until_closed(&mut kept).await.as_deref(), Some(""), "an idle kept-alive connection is closed");
}

#[tokio::test]
async fn a_body_trickling_in_is_cut_off_at_its_deadline_with_a_json_408() {
    let server = short_limits(64).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let body = br#"{"username": "admin", "password": "correct horse battery staple"}"#;
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: plugwatch\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // One byte every 200 ms: no pause is long, but the whole body would take 13 s against a limit of 1 s.
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for byte in body {
            if writer.write_all(&[*byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(GUARD, reader.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server answered and closed before the guard");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/json") && text.contains("request_timeout"), "{text}");
    assert!(text.contains("1 s (http.body_timeout_secs)"), "{text}");
    trickle.abort();
}

#[tokio::test]
async fn a_normal_keep_alive_client_is_unaffected() {
    let server = short_limits(64).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..5 {
        stream.write_all(HEALTHZ).await.unwrap();
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A client that sends its body at once, on the same kind of server, through an ordinary HTTP client.
    for _ in 0..3 {
        let credentials = serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD});
        let (status, body) = server.post("/api/v1/auth/login", credentials).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let server = TestServer::start_with(|c| {
        c.http.header_timeout_secs = 30;
        c.http.keep_alive_secs = 30;
        c.http.max_connections = 2;
    })
    .await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    for stream in [&mut first, &mut second] {
        stream.write_all(HEALTHZ).await.unwrap();
        assert!(read_response(stream).await.starts_with("HTTP/1.1 200"));
    }
    // The third connects (the kernel queues it) but is not served while both slots are taken.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "served over the cap: {early:?}");
    drop(first);
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"), "served once a slot is free");
    second.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));
}
