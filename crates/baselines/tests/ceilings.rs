//! The ceilings `cargo xtask bench-http` compares plugwatch with must do the work they stand for: the bare
//! echo answers the body it got, and the raw wasmtime server answers what the echo component returns for
//! it (so its figure is a real fresh-instance call, not an error page).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(binary: &str, args: &[&str]) -> (Server, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(binary).arg(format!("127.0.0.1:{port}")).args(args).stdout(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "{binary} did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Server(child), port)
}

/// One POST over a fresh connection; the status and body.
fn post(port: u16, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let status = String::from_utf8_lossy(&response[9..12]).parse().unwrap();
    (status, response[split + 4..].to_vec())
}

const BODY: &[u8] =
    br#"{"hook":"order.created","input":{"order_id":"ord-1001","items":[{"sku":"kimchi","quantity":1}]}}"#;

#[test]
fn the_bare_echo_answers_the_body() {
    let (_server, port) = start(env!("CARGO_BIN_EXE_bare_echo"), &[]);
    assert_eq!(post(port, "/echo", BODY), (200, BODY.to_vec()));
}

#[test]
fn the_raw_wasmtime_ceiling_answers_what_the_echo_component_returns() {
    let template = include_str!("../../runtime/tests/fixtures/plugin.wat.in");
    let echo =
        template.replace("{extra}", "").replace("{body}", "(call $ok (local.get $input) (local.get $input_len))");
    let dir = std::env::temp_dir().join(format!("plugwatch-ceilings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let component = dir.join("echo.wat");
    std::fs::write(&component, echo).unwrap();
    let (_server, port) = start(env!("CARGO_BIN_EXE_raw_wasmtime"), &[component.to_str().unwrap()]);
    for _ in 0..3 {
        assert_eq!(post(port, "/invoke", BODY), (200, BODY.to_vec()), "each request a fresh instance");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
