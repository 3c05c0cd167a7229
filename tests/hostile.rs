//! Hostile and broken input at the HTTP edge: each case is a raw request and the answer it must
//! get. None may panic the daemon, hold a connection forever, or leave an event behind.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{raw_request, Daemon, Tables};

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_expected_status_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "").await;
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let huge_array = format!(
        r#"{{"external_id":"m","thread_id":"t","from":{{"email":"a@b.co"}},"text":"x","subject":[{}0]}}"#,
        "0,".repeat(2_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("invalid UTF-8", post("/hooks/api", "application/json", b"{\"external_id\":\"\xff\xfe\"}"), "400", "invalid JSON"),
        ("deeply nested JSON", post("/hooks/api", "application/json", deep.as_bytes()), "413", "limit of 4096 bytes"),
        ("a huge array in a field", post("/hooks/api", "application/json", huge_array.as_bytes()), "400", "subject: invalid type: sequence"),
        ("JSON null", post("/hooks/api", "application/json", b"null"), "400", "invalid JSON"),
        ("an unknown channel", post("/hooks/../../etc", "application/json", b"{}"), "404", "no such endpoint"),
        ("a channel id that is not UTF-8", post("/hooks/%00%ff", "application/json", b"{}"), "400", "channel id in the URL"),
        ("a wrong method", b"DELETE /hooks/api HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(), "405", "method not allowed"),
        ("no content type", b"POST /hooks/api HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".to_vec(), "415", "content type must be application/json"),
        ("a bad events query", b"GET /v1/events?after=-1&limit=x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(), "400", "query:"),
        ("an unknown events parameter", b"GET /v1/events?since=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(), "400", "unknown field"),
        ("garbage instead of HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n".to_vec(), "400", ""),
    ];
    for (what, request, status, message) in cases {
        let answer = raw_request(daemon.addr, &request, Duration::from_secs(10));
        let status_line = answer.lines().next().unwrap_or_default();
        assert!(
            status_line.contains(status),
            "{what}: expected {status}, got {status_line:?}"
        );
        assert!(
            answer.contains(message),
            "{what}: expected {message:?} in {answer}"
        );
    }
    // A body shorter than its declared length, then the client hangs up.
    let mut stream = TcpStream::connect(daemon.addr).unwrap();
    stream
        .write_all(b"POST /hooks/api HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"exte")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = String::new();
    let _ = stream.read_to_string(&mut rest);
    assert!(
        !rest.starts_with("HTTP/1.1 2"),
        "a truncated body is never accepted: {rest}"
    );

    daemon.settled().await;
    assert!(
        daemon.all_events().await.is_empty(),
        "no input left an event"
    );
    let health = reqwest::get(daemon.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "still serving after all of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let tables = Tables {
        server: "header_read_timeout_secs = 1\nbody_read_timeout_secs = 1\n",
        ..Tables::default()
    };
    let daemon = Daemon::start_with(dir.path(), tables, "").await;

    // Slow headers: the connection is closed without an answer after the header timeout.
    let started = Instant::now();
    let mut stream = TcpStream::connect(daemon.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /hooks/api HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "headers timed out"
    );

    // Slow body: 408 after the body timeout, naming it.
    let started = Instant::now();
    let mut stream = TcpStream::connect(daemon.addr).unwrap();
    stream
        .write_all(b"POST /hooks/api HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{")
        .unwrap();
    let answer = raw_request_on(stream, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("did not arrive within 1 seconds"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
}

fn raw_request_on(mut stream: TcpStream, timeout: Duration) -> String {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        if response.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}
