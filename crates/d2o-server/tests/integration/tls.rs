//! TLS in the process, on a real socket: ALPN, https file URLs, plain HTTP on the TLS port, and
//! the connection limits during and after the handshake. Certificates: `tests/data/tls`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

fn tls_fixture(name: &str) -> PathBuf {
    crate_dir().join("../../tests/data/tls").join(name)
}

/// Serves the fixture tables over TLS (the `ssl` section, server A's certificate) with a 1 s
/// header-read timeout; returns the port.
async fn serve_tls() -> u16 {
    let extra = format!(
        "ssl:\n  certificateFile: {}\n  certificateKeyFile: {}\nheaderReadTimeoutSeconds: 1\nidleTimeoutSeconds: 5\n",
        tls_fixture("server-a.pem").display(),
        tls_fixture("server-a.key").display()
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(d2o_server::serve(listener, state_with(&extra), std::future::pending()));
    port
}

fn ca() -> Vec<u8> {
    std::fs::read(tls_fixture("ca.pem")).expect("the test CA")
}

/// A client that trusts the test CA only.
fn client(http1_only: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca()).expect("CA pem")])
        .timeout(Duration::from_secs(20));
    let builder = if http1_only { builder.http1_only() } else { builder };
    builder.build().expect("client")
}

#[tokio::test]
async fn https_with_alpn_and_https_file_urls() {
    let port = serve_tls().await;
    let base = format!("https://127.0.0.1:{port}");
    for (client, version) in [(client(false), reqwest::Version::HTTP_2), (client(true), reqwest::Version::HTTP_11)] {
        let response = client.get(format!("{base}/health")).send().await.expect("health over TLS");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), version, "ALPN");
    }

    let query = client(false)
        .post(format!("{base}{}", t("basic_partitioned", "/query")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("query");
    assert_eq!(query.status(), 200);
    let text = query.text().await.expect("body");
    let file = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|l| l.get("file").cloned())
        .expect("a file line");
    let url = file["url"].as_str().expect("url");
    assert!(url.starts_with(&format!("{base}/delta-sharing/files/")), "{url}");
    let data = client(false).get(url).send().await.expect("file").bytes().await.expect("bytes");
    assert_eq!(data.len() as i64, file["size"].as_i64().expect("size"));
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_told_to_use_https() {
    let port = serve_tls().await;
    let response = reqwest::get(format!("http://127.0.0.1:{port}/health")).await.expect("an answer");
    assert_eq!(response.status(), 400);
    assert!(response.text().await.expect("body").contains("https://"));
}

/// Reads until the server closes the connection; how long that took.
async fn closed_after(mut stream: TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read_all = async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all).await.expect("closed within 10 s");
    started.elapsed()
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_dropped_after_the_header_timeout() {
    let port = serve_tls().await;
    let silent = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut partial = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    // The header of a 512-byte handshake record, and nothing of the record.
    partial.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.expect("write");
    for stream in [silent, partial] {
        let took = closed_after(stream).await;
        assert!(took < Duration::from_secs(4), "closed after the 1 s header-read timeout, not the idle one: {took:?}");
    }
}

#[tokio::test]
async fn after_the_handshake_the_connection_is_idle_not_slow() {
    let port = serve_tls().await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca()) {
        roots.add(cert.expect("CA pem")).expect("CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    // Longer than the header-read timeout (1 s), shorter than the idle timeout (5 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.expect("request");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}
