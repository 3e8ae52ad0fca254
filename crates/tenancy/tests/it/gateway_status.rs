//! `tenancy admin gateway-status`: a gateway's sync state, read from its
//! metrics port, with a failing exit status while it is not caught up.

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy::{Part, start};
use tenancy_runtime::SystemClock;
use tenancy_testkit::{TestDatabase, test_config};

/// Runs `tenancy admin gateway-status --metrics ADDRESS` (off the
/// runtime's thread, which serves the suite meanwhile).
async fn gateway_status(address: std::net::SocketAddr) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
            .args(["admin", "gateway-status", "--metrics", &address.to_string()])
            .env("TENANCY_PRINCIPAL_KEY", "11".repeat(32))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn row<'a>(stdout: &'a str, stream: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|l| l.starts_with(stream))
        .unwrap_or_else(|| panic!("no {stream} row in {stdout}"))
        .split_whitespace()
        .collect()
}

#[tokio::test]
async fn gateway_status_shows_both_streams_caught_up_with_their_positions() {
    let db = TestDatabase::new("gateway_status").await;
    let mut config = test_config(&db);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = start(config, Part::All, Arc::new(SystemClock))
        .await
        .unwrap();
    let metrics = running.metrics.unwrap();
    // The gateway catches up within moments of starting.
    let deadline = Instant::now() + Duration::from_secs(15);
    let output = loop {
        let output = gateway_status(metrics).await;
        if output.status.success() {
            break output;
        }
        assert!(
            Instant::now() < deadline,
            "never caught up: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("stream"), "{stdout}");
    for stream in ["revocations", "policies"] {
        let row = row(&stdout, stream);
        assert_eq!(row[1], "yes", "{stdout}");
        let position: i64 = row[2].parse().unwrap();
        assert!(position >= 0, "{stdout}");
        assert_eq!(row[3], "0", "events behind: {stdout}");
    }
    running.stop().await.unwrap();
}

#[tokio::test]
async fn gateway_status_fails_while_the_gateway_cannot_follow_its_streams() {
    // A gateway alone: identity and account are nowhere, so neither stream
    // ever catches up (and the gateway refuses authenticated calls).
    let db = TestDatabase::new("gateway_status_alone").await;
    let mut config = test_config(&db);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = start(config, Part::Gateway, Arc::new(SystemClock))
        .await
        .unwrap();
    let output = gateway_status(running.metrics.unwrap()).await;
    assert!(!output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(row(&stdout, "revocations")[1], "no", "{stdout}");
    assert_eq!(row(&stdout, "policies")[1], "no", "{stdout}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("not caught up (revocations, policies)"),
        "{stderr}"
    );
    running.stop().await.unwrap();

    // Nothing listening: one clear line, exit status 1.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = gateway_status(nowhere).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot read"), "{stderr}");
}
