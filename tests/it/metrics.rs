//! The metrics port of the whole suite, scraped after real traffic through
//! the gateway: the names exist, counts move by what was done, no label
//! holds an id, the dashboard and the README name only what is served.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use tenancy_proto::identity::{GetMeRequest, LoginRequest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::gateway::{PASSWORD, Suite, reason};

/// One sample: its name and labels.
type Series = (String, BTreeMap<String, String>);

/// A scrape, parsed: every sample, and every family's `# TYPE`.
pub(crate) struct Scrape {
    samples: BTreeMap<Series, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of `name` with exactly `labels` (0 when absent).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum of `name` over every sample whose labels include `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every name a query may use: gauges and counters (`_total`) as
    /// typed, histograms with `_bucket`, `_sum`, `_count`.
    fn names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (name, kind) in &self.types {
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            } else {
                names.insert(name.clone());
            }
        }
        names
    }
}

/// `GET path` on `address` over HTTP/1.1: (status line, headers, body).
async fn http_get(
    address: SocketAddr,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let accept = accept.map_or(String::new(), |a| format!("accept: {a}\r\n"));
    stream
        .write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nhost: tenancy\r\n{accept}connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    // A server that speaks no HTTP/1 may reset the connection.
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

pub(crate) async fn scrape(address: SocketAddr) -> Scrape {
    let (status, headers, body) = http_get(address, "GET", "/metrics", None).await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    parse(&body)
}

/// Parses Prometheus text 0.0.4.
fn parse(text: &str) -> Scrape {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Our label values hold no `,` or `"` (they are names).
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once("=\"").unwrap();
            map.insert(key.to_owned(), value.trim_end_matches('"').to_owned());
        }
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap(),
        };
        samples.insert((name.to_owned(), map), value);
    }
    Scrape { samples, types }
}

/// The suite with `tweak` applied and its metrics served; the metrics
/// address.
pub(crate) async fn suite_with_metrics_and(
    tweak: impl FnOnce(&mut tenancy_runtime::config::Config),
) -> (Suite, SocketAddr) {
    let suite = Suite::start(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        tweak(config);
    })
    .await;
    let address = suite.running.metrics.expect("metrics are served");
    (suite, address)
}

async fn suite_with_metrics() -> (Suite, SocketAddr) {
    suite_with_metrics_and(|_| {}).await
}

async fn login(suite: &Suite, email: &str, password: &str) -> tonic::Status {
    suite
        .identity("")
        .login(LoginRequest {
            email: email.into(),
            password: password.into(),
            account_id: String::new(),
            unlock_token: String::new(),
        })
        .await
        .unwrap_err()
}

/// Calls `path` (no such method) through the gateway.
async fn call_path(suite: &Suite, path: &str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(suite.gateway.clone());
    grpc.ready().await.unwrap();
    grpc.unary::<(), (), _>(
        tonic::Request::new(()),
        path.parse().unwrap(),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap_err()
}

fn looks_like_an_id(value: &str) -> bool {
    let hex_run = value
        .split(|c: char| !c.is_ascii_hexdigit())
        .any(|run| run.len() >= 8 && run.chars().any(|c| c.is_ascii_digit()));
    value.contains('@')
        || value.starts_with("tny_")
        || value.starts_with("eyJ")
        || value.parse::<std::net::IpAddr>().is_ok()
        || hex_run
        || value.len() > 64
}

#[tokio::test]
async fn metrics_move_by_what_traffic_did_and_no_label_holds_an_id() {
    let (suite, address) = suite_with_metrics().await;
    let email = "ada@example.com";
    let token = suite.user(email).await;
    // The counts before the calls under test.
    let before = scrape(address).await;

    let wrong = login(&suite, email, "not the right password").await;
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let unknown = login(&suite, "nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    for _ in 0..2 {
        let me = suite.identity(&token).get_me(GetMeRequest::default()).await;
        assert!(me.is_ok(), "{me:?}");
    }
    let garbled = suite
        .identity("not-a-token")
        .get_me(GetMeRequest::default())
        .await
        .unwrap_err();
    let garbled_reason = reason(&garbled);
    // An attacker's made-up paths, with ids in them.
    for _ in 0..20 {
        let path = format!(
            "/evil.{}.Service/Method{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        assert_eq!(
            call_path(&suite, &path).await.code(),
            tonic::Code::Unimplemented
        );
    }
    let after = scrape(address).await;
    let moved =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    let moved_sum =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);

    // Logins, by outcome: exactly what was done.
    let logins = "tenancy_identity_logins_total";
    assert_eq!(moved(logins, &[("outcome", "wrong_password")]), 1.0);
    assert_eq!(moved(logins, &[("outcome", "unknown_user")]), 1.0);
    assert_eq!(moved(logins, &[("outcome", "success")]), 0.0);
    assert_eq!(before.get(logins, &[("outcome", "success")]), 1.0);
    // Both failed logins hashed (an unknown user against a dummy hash).
    assert_eq!(
        moved("tenancy_identity_password_hash_seconds_count", &[]),
        2.0
    );

    // The standard gRPC metrics, as the gateway served and forwarded GetMe
    // and as identity served it.
    let get_me = |part: &'static str, code: &'static str| {
        vec![
            ("grpc_type", "unary"),
            ("grpc_service", "tenancy.identity.v1.IdentityService"),
            ("grpc_method", "GetMe"),
            ("grpc_code", code),
            ("part", part),
        ]
    };
    assert_eq!(
        moved("grpc_server_handled_total", &get_me("gateway", "OK")),
        2.0
    );
    assert_eq!(
        moved("grpc_server_handled_total", &get_me("identity", "OK")),
        2.0
    );
    assert_eq!(
        moved("grpc_client_handled_total", &get_me("gateway", "OK")),
        2.0
    );
    assert_eq!(
        moved(
            "grpc_server_handled_total",
            &get_me("gateway", "Unauthenticated")
        ),
        1.0,
        "the garbled token"
    );
    let login_started = [
        ("grpc_type", "unary"),
        ("grpc_service", "tenancy.identity.v1.IdentityService"),
        ("grpc_method", "Login"),
        ("part", "gateway"),
    ];
    assert_eq!(moved("grpc_server_started_total", &login_started), 2.0);
    assert_eq!(
        moved(
            "grpc_server_handling_seconds_count",
            &[
                ("grpc_type", "unary"),
                ("grpc_service", "tenancy.identity.v1.IdentityService"),
                ("grpc_method", "GetMe"),
                ("part", "gateway"),
            ]
        ),
        3.0
    );
    assert_eq!(
        moved(
            "grpc_server_handled_total",
            &[
                ("grpc_type", "unary"),
                ("grpc_service", "unknown"),
                ("grpc_method", "unknown"),
                ("grpc_code", "Unimplemented"),
                ("part", "gateway"),
            ]
        ),
        20.0,
        "made-up paths share one series"
    );

    // The gateway's decisions: two logins and two GetMe allowed; the
    // garbled token and the made-up paths refused with their reasons.
    let decisions = "tenancy_gateway_decisions_total";
    assert_eq!(
        moved(
            decisions,
            &[("decision", "allowed"), ("reason", "none"), ("code", "OK")]
        ),
        4.0
    );
    assert_eq!(
        moved_sum(
            decisions,
            &[("decision", "refused"), ("reason", garbled_reason.as_str())]
        ),
        1.0
    );
    assert_eq!(
        moved_sum(
            decisions,
            &[("decision", "refused"), ("reason", "METHOD_UNKNOWN")]
        ),
        20.0
    );
    // The token cache: the first GetMe and the garbled token missed, the
    // second GetMe hit.
    let cache = "tenancy_gateway_token_cache_lookups_total";
    assert_eq!(moved(cache, &[("kind", "portal"), ("result", "miss")]), 2.0);
    assert_eq!(moved(cache, &[("kind", "portal"), ("result", "hit")]), 1.0);
    assert_eq!(
        after.get("tenancy_gateway_token_cache_entries", &[("kind", "portal")]),
        1.0
    );

    // Streams, pools, the outbox: present and sane.
    for stream in ["revocations", "policies"] {
        assert_eq!(
            after.get("tenancy_gateway_watch_caught_up", &[("stream", stream)]),
            1.0,
            "{stream}"
        );
        let since = after.get(
            "tenancy_gateway_watch_seconds_since_last_message",
            &[("stream", stream)],
        );
        assert!((0.0..60.0).contains(&since), "{stream}: {since}");
        assert_eq!(
            after.get("tenancy_gateway_watch_events_behind", &[("stream", stream)]),
            0.0
        );
    }
    assert!(
        after.get(
            "tenancy_gateway_watch_events_total",
            &[("stream", "policies")]
        ) >= 0.0
    );
    for service in ["identity", "account", "contacts", "support"] {
        let max = after.get("tenancy_db_pool_max_connections", &[("service", service)]);
        assert!(max >= 1.0, "{service}: {max}");
    }
    // Statements after the migrations: support had none yet.
    for service in ["identity", "account", "contacts"] {
        assert!(
            after.sum("tenancy_db_query_seconds_count", &[("service", service)]) > 0.0,
            "{service}"
        );
    }
    assert!(
        after.get("tenancy_contacts_deliveries_total", &[("outcome", "sent")]) >= 1.0,
        "the verification email went out"
    );
    assert!(after.types.contains_key("tenancy_contacts_outbox_messages"));
    assert!(
        after.get("tenancy_identity_password_hash_slots", &[]) >= 1.0,
        "hashing slots"
    );

    // Bounded: no label value that looks like an id, an address or a
    // token, and few distinct values per label.
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (_, labels) in after.samples.keys() {
        for (key, value) in labels {
            assert!(
                !looks_like_an_id(value),
                "label {key}={value:?} looks like an id"
            );
            values.entry(key).or_default().insert(value);
        }
    }
    assert!(
        !after
            .samples
            .keys()
            .any(|(_, l)| l.values().any(|v| v.contains("evil"))),
        "a client's path became a label"
    );
    for (key, distinct) in &values {
        assert!(
            distinct.len() <= 200,
            "label {key} has {} values",
            distinct.len()
        );
    }
    assert!(
        after.samples.len() < 5_000,
        "{} series",
        after.samples.len()
    );
    suite.running.stop().await.unwrap();
}

#[test]
fn the_id_check_catches_ids() {
    for id in [
        "0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9f",
        "0195f3a27c1e7d3a9b2c4e5f6a7b8c9f",
        "tny_abcdef",
        "eyJhbGciOiJFZERTQSJ9",
        "203.0.113.7",
        "ada@example.com",
        "8f3c2a41",
    ] {
        assert!(looks_like_an_id(id), "{id}");
    }
    for name in [
        "GetMe",
        "tenancy.identity.v1.IdentityService",
        "OK",
        "wrong_password",
        "TOKEN_EXPIRED",
        "client_address",
        "identity",
        "+Inf",
        "0.0025",
    ] {
        assert!(!looks_like_an_id(name), "{name}");
    }
}

#[tokio::test]
async fn the_metrics_port_serves_both_text_formats_at_metrics_only() {
    let (suite, address) = suite_with_metrics().await;
    let (status, headers, body) = http_get(
        address,
        "GET",
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: application/openmetrics-text"),
        "{headers}"
    );
    assert!(
        body.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with EOF"
    );
    let (status, _, _) = http_get(address, "GET", "/", None).await;
    assert!(status.contains(" 404 "), "{status}");
    let (status, headers, _) = http_get(address, "POST", "/metrics", None).await;
    assert!(status.contains(" 405 "), "{status}");
    assert!(headers.contains("allow: get, head"), "{headers}");
    // Not on the public port: the gateway speaks gRPC (HTTP/2) only there.
    let gateway = suite.running.gateway.unwrap();
    let (_, _, body) = http_get(gateway, "GET", "/metrics", None).await;
    assert!(!body.contains("grpc_server"), "{body}");
    suite.running.stop().await.unwrap();
}

/// The metric names a PromQL expression (its grouping clauses stripped)
/// uses: identifiers outside label matchers, ranges and strings that are
/// not functions or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let (mut i, mut brace, mut bracket, mut string) = (0, 0, 0, false);
    while i < chars.len() {
        let c = chars[i];
        if string {
            string = c != '"';
            i += 1;
            continue;
        }
        match c {
            '"' => string = true,
            '{' => brace += 1,
            '}' => brace -= 1,
            '[' => bracket += 1,
            ']' => bracket -= 1,
            c if (c.is_ascii_alphabetic() || c == '_') && brace == 0 && bracket == 0 => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let keyword = matches!(
                    word.as_str(),
                    "by" | "without"
                        | "on"
                        | "ignoring"
                        | "group_left"
                        | "group_right"
                        | "bool"
                        | "offset"
                        | "and"
                        | "or"
                        | "unless"
                );
                if next != Some(&'(') && !keyword {
                    names.insert(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// Every metric name in the dashboard's queries.
fn dashboard_names(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                    names.extend(metric_names(&strip_groupings(expr)));
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

/// `expr` without the label lists of `by (…)`, `without (…)`, `on (…)`,
/// `ignoring (…)`, `group_left (…)`, `group_right (…)`.
fn strip_groupings(expr: &str) -> String {
    let mut out = expr.to_owned();
    for keyword in [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ] {
        while let Some(at) = find_keyword(&out, keyword) {
            let rest = &out[at + keyword.len()..];
            if !rest.trim_start().starts_with('(') {
                break;
            }
            let Some(close) = rest.find(')') else { break };
            out = format!("{} {}", &out[..at], &rest[close + 1..]);
        }
    }
    out
}

fn find_keyword(text: &str, keyword: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find(keyword) {
        let at = from + found;
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + keyword.len()).copied();
        let word_char = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !word_char(before) && !word_char(after) {
            return Some(at);
        }
        from = at + keyword.len();
    }
    None
}

#[test]
fn the_promql_reader_finds_metric_names_and_nothing_else() {
    let names = metric_names(&strip_groupings(
        r#"sum by (part, grpc_code) (rate(grpc_server_handled_total{grpc_code=~"OK|Internal"}[5m])) / on (part) group_left sum without (le) (tenancy_x_bucket) > 0.5"#,
    ));
    assert_eq!(
        names,
        ["grpc_server_handled_total", "tenancy_x_bucket"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
}

#[tokio::test]
async fn the_dashboard_and_the_readme_name_only_metrics_we_serve_and_the_readme_all_of_them() {
    let (suite, address) = suite_with_metrics().await;
    // A forwarded call, so the client-side families have a series.
    login(&suite, "nobody@example.com", PASSWORD).await;
    let served = scrape(address).await;
    let names = served.names();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana/tenancy.json")).unwrap();
    let used = dashboard_names(&dashboard);
    assert!(used.len() >= 20, "the dashboard uses {used:?}");
    let unknown: Vec<&String> = used.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard uses metrics nobody serves: {unknown:?}; served: {names:?}"
    );
    // The check would see a wrong name.
    let mut broken = dashboard.clone();
    broken["panels"][1]["targets"][0]["expr"] =
        serde_json::Value::String("rate(tenancy_made_up_total[5m])".into());
    assert!(dashboard_names(&broken).contains("tenancy_made_up_total"));

    // The README's Operations section documents every family we serve,
    // and names no other.
    let readme = include_str!("../../README.md");
    let operations = readme
        .split("\n## Operations")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap();
    for family in served.types.keys() {
        assert!(
            operations.contains(&format!("`{family}`")),
            "README Operations does not document `{family}`"
        );
    }
    for word in operations.split('`').skip(1).step_by(2) {
        if (word.starts_with("tenancy_") || word.starts_with("grpc_"))
            && !word.contains('.')
            && !word.contains(' ')
            && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !["grpc_type", "grpc_service", "grpc_method", "grpc_code"].contains(&word)
        {
            assert!(
                names.contains(word) || served.types.contains_key(word),
                "README Operations names `{word}`, which is not served"
            );
        }
    }
    suite.running.stop().await.unwrap();
}
