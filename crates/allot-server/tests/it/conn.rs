//! The connection layer over a real socket (`allot_server::http::serve`): header and body
//! timeouts, the connection limit and the bounded shutdown. Timeouts are configured short so the
//! tests are quick; the assertions are about what the server does, not how long it takes. The
//! outer `tokio::time::timeout`s only keep a broken server from hanging the suite.

use crate::support::*;
use allot_server::http::{serve, Limits};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest any step may take before the test calls the server hung.
const HANG: Duration = Duration::from_secs(20);

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<usize>,
    _server: Server,
}

async fn start(limits: Limits) -> Running {
    let s = configured().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let router = allot_server::router(s.app.clone());
    let task = tokio::spawn(serve(listener, router, limits, s.app.connections(), async move {
        let _ = rx.await;
    }));
    Running { addr, stop: Some(tx), task, _server: s }
}

fn limits(header: Duration, max_connections: usize) -> Limits {
    Limits {
        header_timeout: header,
        body_timeout: Duration::from_secs(60),
        max_connections,
        shutdown_timeout: Duration::from_secs(60),
    }
}

/// A connection that sent half a request line and headers, never the blank line.
async fn half_sent(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n").await.unwrap();
    c
}

/// Reads until the server closes the connection; what it sent before.
async fn read_to_close(c: &mut TcpStream) -> Vec<u8> {
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(HANG, c.read(&mut buf)).await.expect("the server never closed the connection") {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `GET /healthz` on a new connection and returns the status line.
async fn healthz(addr: SocketAddr) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let text = String::from_utf8_lossy(&read_to_close(&mut c).await).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_closed_after_the_header_timeout() {
    let r = start(limits(Duration::from_millis(200), 100)).await;
    let mut c = half_sent(r.addr).await;
    let got = read_to_close(&mut c).await;
    assert!(!got.starts_with(b"HTTP/1.1 200"), "a half-sent request is not answered: {got:?}");
    // The server still answers others.
    assert_eq!(healthz(r.addr).await, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let r = start(limits(Duration::from_millis(200), 100)).await;
    let mut c = TcpStream::connect(r.addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let got = String::from_utf8_lossy(&read_to_close(&mut c).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

/// At the limit, a new connection is not accepted while the others stay open; it is served as
/// soon as one of them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_for_a_free_slot() {
    let r = start(limits(Duration::from_secs(60), 1)).await;
    let holder = half_sent(r.addr).await;
    let waiting = tokio::spawn(healthz(r.addr));
    // The server must not answer while the one slot is held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a connection past the limit was served");
    let c = r._server.app.connections();
    assert_eq!(c.open.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(c.waited.load(std::sync::atomic::Ordering::Relaxed) >= 1, "the wait is counted");
    drop(holder);
    let status = tokio::time::timeout(HANG, waiting).await.expect("never served").unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// Slow clients holding every slot are closed at the header timeout, and then `/healthz` answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_once_slow_connections_at_the_limit_time_out() {
    let r = start(limits(Duration::from_millis(300), 2)).await;
    let mut slow = vec![half_sent(r.addr).await, half_sent(r.addr).await];
    let status = tokio::time::timeout(HANG, healthz(r.addr)).await.expect("never served");
    assert_eq!(status, "HTTP/1.1 200 OK");
    for c in &mut slow {
        let got = read_to_close(c).await;
        assert!(got.is_empty() || !got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    }
}

/// With a slow client connected (and a header timeout far longer than the shutdown bound),
/// shutdown still completes: the slow connection is dropped at the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_within_its_bound_while_a_slow_connection_is_open() {
    let mut l = limits(Duration::from_secs(3600), 10);
    l.shutdown_timeout = Duration::from_millis(200);
    let mut r = start(l).await;
    let mut slow = half_sent(r.addr).await;
    // Make sure the server has accepted it before stopping.
    assert_eq!(healthz(r.addr).await, "HTTP/1.1 200 OK");
    r.stop.take().unwrap().send(()).unwrap();
    let dropped = tokio::time::timeout(HANG, &mut r.task).await.expect("shutdown hung").unwrap();
    assert_eq!(dropped, 1, "the slow connection was dropped at the bound");
    read_to_close(&mut slow).await;
}

/// An idle connection does not hold shutdown up at all: it is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_without_waiting() {
    let mut r = start(limits(Duration::from_secs(3600), 10)).await;
    let mut idle = TcpStream::connect(r.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    r.stop.take().unwrap().send(()).unwrap();
    let dropped = tokio::time::timeout(HANG, &mut r.task).await.expect("shutdown hung").unwrap();
    assert_eq!(dropped, 0, "the idle kept-alive connection closed gracefully");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let mut l = limits(Duration::from_secs(60), 10);
    l.body_timeout = Duration::from_millis(200);
    let r = start(l).await;
    let mut c = TcpStream::connect(r.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/evaluate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"context\""
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let got = String::from_utf8_lossy(&read_to_close(&mut c).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("BODY_TIMEOUT"), "{got}");
}

/// The attack, scaled down: many more half-sent connections than the limit. None of them
/// is ever answered, each is closed, and `/healthz` answers once the server gets to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slow_connections_cannot_starve_the_server() {
    let r = start(limits(Duration::from_millis(300), 32)).await;
    let mut slow = Vec::with_capacity(300);
    for _ in 0..300 {
        slow.push(half_sent(r.addr).await);
    }
    let status = tokio::time::timeout(HANG, healthz(r.addr)).await.expect("never served");
    assert_eq!(status, "HTTP/1.1 200 OK");
    for c in &mut slow {
        let got = read_to_close(c).await;
        assert!(!got.starts_with(b"HTTP/1.1 200"), "a half-sent request was answered");
    }
}
