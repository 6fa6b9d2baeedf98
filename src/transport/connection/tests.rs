//! Parking, on an in-memory stream with tokio's clock paused: time moves only when
//! every task waits, so "quiet for a second" is exact and the tests do not sleep.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use super::{HoldsBuffers, PARK_AFTER, Protocols, keeps_alive, serve_http1};
use crate::transport::shutdown::Shutdown;

impl HoldsBuffers for tokio::io::DuplexStream {}

const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);

struct Served {
    client: DuplexStream,
    parked: Gauge,
    stop: Shutdown,
    task: JoinHandle<Result<(), hyper::Error>>,
}

/// Answers "ok" (without reading a request body), or after `/slow` ten seconds
/// later, or 1 MiB to `/big`, or "ok" to `/hold` while keeping its request body
/// unread for a minute, or switches `/upgrade` to an echo of what follows.
async fn answer(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/slow" => tokio::time::sleep(Duration::from_secs(10)).await,
        "/hold" => {
            let body = req.into_body();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop(body);
            });
            return Response::new(Full::new(Bytes::from_static(b"ok")));
        }
        "/big" => return Response::new(Full::new(Bytes::from(vec![b'x'; 1 << 20]))),
        "/upgrade" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = hyper_util::rt::TokioIo::new(upgrade.await.expect("upgraded"));
                let mut buf = [0u8; 4];
                io.read_exact(&mut buf).await.unwrap();
                io.write_all(&buf).await.unwrap();
            });
            return Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .body(Full::default())
                .unwrap();
        }
        _ => {}
    }
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

fn start() -> Served {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let parked = Gauge::default();
    let protocols = Protocols::new(HEAD_TIMEOUT, IDLE_TIMEOUT, 16 * 1024, parked.clone());
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { serve_http1(server, &protocols, &answer, &shutdown).await });
    Served { client, parked, stop, task }
}

/// Read one answer with a `content-length` (or none, for a 101): head and body.
async fn read_answer(client: &mut DuplexStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(client.read(&mut byte).await.unwrap(), 1, "closed mid-answer: {}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|n| n.parse::<usize>().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    client.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8(body).unwrap()
}

async fn get(client: &mut DuplexStream, path: &str) -> String {
    client.write_all(format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n").as_bytes()).await.unwrap();
    read_answer(client).await
}

/// Wait (on the paused clock) long enough for a quiet connection to be parked.
async fn idle() {
    tokio::time::sleep(PARK_AFTER * 3).await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_connection_is_parked_and_then_answers_on_the_same_stream() {
    let mut s = start();
    // A new connection waits parked for its first request.
    tokio::task::yield_now().await;
    assert_eq!(s.parked.get(), 1);
    assert!(get(&mut s.client, "/").await.ends_with("\r\n\r\nok"));
    assert_eq!(s.parked.get(), 0, "serving, not parked");

    idle().await;
    assert_eq!(s.parked.get(), 1, "quiet for {PARK_AFTER:?}: parked");
    for _ in 0..3 {
        let answer = get(&mut s.client, "/").await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
        assert!(!answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
        idle().await;
    }
    assert_eq!(s.parked.get(), 1);
    assert!(!s.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn pipelined_requests_are_all_answered_around_parking() {
    let mut s = start();
    s.client.write_all(b"GET /a HTTP/1.1\r\nHost: app\r\n\r\nGET /b HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
    assert!(read_answer(&mut s.client).await.starts_with("HTTP/1.1 200"));
    assert!(read_answer(&mut s.client).await.starts_with("HTTP/1.1 200"));
    idle().await;
    assert_eq!(s.parked.get(), 1);
    s.client.write_all(b"GET /c HTTP/1.1\r\nHost: app\r\n\r\nGET /d HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
    assert!(read_answer(&mut s.client).await.ends_with("ok"));
    assert!(read_answer(&mut s.client).await.ends_with("ok"));
}

#[tokio::test(start_paused = true)]
async fn a_head_that_pauses_midway_is_answered_and_the_connection_kept() {
    let mut s = start();
    for _ in 0..2 {
        // First on the new connection, then after a request was answered.
        s.client.write_all(b"GET /slow-head HTTP/1.1\r\nHo").await.unwrap();
        idle().await;
        assert_eq!(s.parked.get(), 0, "a head begun is served awake, not parked");
        s.client.write_all(b"st: app\r\n\r\n").await.unwrap();
        let answer = read_answer(&mut s.client).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
        assert!(!answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    }
    assert!(get(&mut s.client, "/").await.ends_with("ok"));
}

#[tokio::test(start_paused = true)]
async fn a_trickled_head_is_cut_off_within_twice_the_head_timeout() {
    let mut s = start();
    assert!(get(&mut s.client, "/").await.ends_with("ok"));
    let started = tokio::time::Instant::now();
    s.client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // One header line every 3 s: quiet enough to be parked each time, were a
    // half-read head allowed to park again.
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(PARK_AFTER * 3).await;
            if s.client.write_all(format!("x-{i}: y\r\n").as_bytes()).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(HEAD_TIMEOUT * 4, trickle).await;
    let served = tokio::time::timeout(HEAD_TIMEOUT * 4, &mut s.task).await;
    assert!(served.is_ok(), "the connection outlived its head timeout");
    assert!(started.elapsed() <= HEAD_TIMEOUT * 2 + PARK_AFTER * 3, "{:?}", started.elapsed());
}

/// The head timeout is read off the clock when the connection looks at hyper
/// (`head_timer`), which it keeps doing while the server stops.
#[tokio::test(start_paused = true)]
async fn a_stalled_first_head_is_cut_off_at_the_head_timeout_also_while_the_server_stops() {
    for stop in [false, true] {
        let mut s = start();
        let started = tokio::time::Instant::now();
        s.client.write_all(b"GET / HTTP/1.1\r\nHost: app\r\n").await.unwrap();
        tokio::time::sleep(PARK_AFTER / 2).await;
        if stop {
            s.stop.stop();
        }
        let served = tokio::time::timeout(HEAD_TIMEOUT * 4, &mut s.task).await;
        assert!(served.is_ok(), "stop {stop}: the connection outlived its head timeout");
        let took = started.elapsed();
        assert!(took >= HEAD_TIMEOUT && took <= HEAD_TIMEOUT + PARK_AFTER * 2, "stop {stop}: cut off after {took:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_is_not_parked() {
    let mut s = start();
    s.client.write_all(b"GET /slow HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
    idle().await;
    assert_eq!(s.parked.get(), 0, "waiting on the handler, not parked");
    let answer = read_answer(&mut s.client).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
}

#[tokio::test(start_paused = true)]
async fn an_upgrade_after_a_park_gets_the_stream() {
    let mut s = start();
    assert!(get(&mut s.client, "/").await.ends_with("ok"));
    idle().await;
    assert_eq!(s.parked.get(), 1);
    s.client
        .write_all(b"GET /upgrade HTTP/1.1\r\nHost: app\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    assert!(read_answer(&mut s.client).await.starts_with("HTTP/1.1 101"));
    // Idle past the park delay: an upgraded stream is no longer hyper's to park.
    idle().await;
    s.client.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    s.client.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_closes_at_shutdown_and_after_the_idle_timeout() {
    let mut s = start();
    assert!(get(&mut s.client, "/").await.ends_with("ok"));
    idle().await;
    s.stop.stop();
    let mut rest = Vec::new();
    assert_eq!(s.client.read_to_end(&mut rest).await.unwrap(), 0);
    s.task.await.unwrap().unwrap();
    assert_eq!(s.parked.get(), 0);

    let mut s = start();
    assert!(get(&mut s.client, "/").await.ends_with("ok"));
    let quiet = tokio::time::Instant::now();
    assert_eq!(s.client.read_to_end(&mut rest).await.unwrap(), 0, "closed without a word");
    // The keep-alive bound, not the head's: idling between requests is no slowloris.
    assert!(quiet.elapsed() >= IDLE_TIMEOUT, "closed after {:?}", quiet.elapsed());
    assert!(quiet.elapsed() <= IDLE_TIMEOUT + PARK_AFTER * 2, "closed after {:?}", quiet.elapsed());
    s.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_connection_closes_if_the_server_stops_before_its_first_request() {
    let mut s = start();
    let stopped = tokio::time::Instant::now();
    s.stop.stop();
    let mut rest = Vec::new();
    assert_eq!(s.client.read_to_end(&mut rest).await.unwrap(), 0);
    s.task.await.unwrap().unwrap();
    assert_eq!(s.parked.get(), 0);
    assert!(stopped.elapsed() < HEAD_TIMEOUT, "closed only at the head timeout");
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_request_in_flight_finish_then_closes() {
    let mut s = start();
    s.client.write_all(b"GET /slow HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.stop.stop();
    let answer = read_answer(&mut s.client).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
    let mut rest = Vec::new();
    assert_eq!(s.client.read_to_end(&mut rest).await.unwrap(), 0);
    s.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_body_paused_after_an_early_answer_is_never_read_as_a_request() {
    let mut s = start();
    // Answered before its body is read; the client then pauses mid-body.
    s.client.write_all(b"POST /early HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\n01234").await.unwrap();
    assert!(read_answer(&mut s.client).await.starts_with("HTTP/1.1 200"));
    idle().await;
    // The rest of the body, then a real request.
    let _ = s.client.write_all(b"56789GET / HTTP/1.1\r\nHost: app\r\n\r\n").await;
    let mut next = Vec::new();
    let _ = tokio::time::timeout(HEAD_TIMEOUT * 3, s.client.read_to_end(&mut next)).await;
    let next = String::from_utf8_lossy(&next);
    // Closing is fine; answering the body's bytes as a request (400) would desync
    // every later answer on the connection.
    assert!(next.is_empty() || next.starts_with("HTTP/1.1 200"), "{next}");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_not_parked_mid_answer() {
    let mut s = start();
    s.client.write_all(b"GET /big HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
    // The answer fills the stream's buffer, and the client reads nothing for a while:
    // quiet, nothing in flight, yet hyper is mid-answer and must not be parked.
    idle().await;
    assert_eq!(s.parked.get(), 0);
    let answer = read_answer(&mut s.client).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.len() > 1 << 20, "{}", &answer[..100]);
    // Asked to stop mid-answer, hyper finished it and then closed the connection.
    let quiet = tokio::time::Instant::now();
    let mut rest = Vec::new();
    assert_eq!(s.client.read_to_end(&mut rest).await.unwrap(), 0);
    assert!(quiet.elapsed() < PARK_AFTER, "closed only after {:?}", quiet.elapsed());
    assert_eq!(s.parked.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_last_exchange_is_never_parked_midway() {
    for request in [
        "POST /hold HTTP/1.1\r\nHost: app\r\nConnection: close\r\nContent-Length: 10\r\n\r\n01234",
        "POST /hold HTTP/1.0\r\nHost: app\r\nContent-Length: 10\r\n\r\n01234",
    ] {
        let mut s = start();
        assert!(get(&mut s.client, "/").await.ends_with("ok"));
        // An answer that is the connection's last, while its body is still coming:
        // hyper would stop at once, in the middle of the request body.
        s.client.write_all(request.as_bytes()).await.unwrap();
        assert!(read_answer(&mut s.client).await.ends_with("ok"));
        idle().await;
        let _ = s.client.write_all(b"56789GET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n").await;
        let mut next = Vec::new();
        let _ = tokio::time::timeout(HEAD_TIMEOUT * 3, s.client.read_to_end(&mut next)).await;
        assert!(next.is_empty(), "{request}: after the last answer: {}", String::from_utf8_lossy(&next));
        assert_eq!(s.parked.get(), 0);
    }
}

#[test]
fn keep_alive_is_read_as_hyper_reads_it() {
    use hyper::Version;
    use hyper::header::{HeaderMap, HeaderValue};
    let headers = |pairs: &[(&'static str, &'static [u8])]| {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        h
    };
    assert!(keeps_alive(Version::HTTP_11, &headers(&[])));
    assert!(keeps_alive(Version::HTTP_11, &headers(&[("connection", b"Keep-Alive, TE")])));
    assert!(!keeps_alive(Version::HTTP_11, &headers(&[("connection", b"te"), ("connection", b" Close")])));
    assert!(!keeps_alive(Version::HTTP_11, &headers(&[("connection", b"Upgrade"), ("upgrade", b"websocket")])));
    assert!(!keeps_alive(Version::HTTP_11, &headers(&[("upgrade", b"h2c")])));
    assert!(!keeps_alive(Version::HTTP_11, &headers(&[("connection", b"\xffclose")])));
    assert!(!keeps_alive(Version::HTTP_10, &headers(&[])));
    assert!(keeps_alive(Version::HTTP_10, &headers(&[("connection", b"keep-alive")])));
    assert!(!keeps_alive(Version::HTTP_09, &headers(&[])));
}
