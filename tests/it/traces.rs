//! Traces (issue 19): one client call through the gateway is one trace,
//! with a span at the gateway and one at each service it reaches, exported
//! over OTLP. The suite runs in a child process (its global subscriber
//! exports spans; this test process keeps its own), a collector stand-in
//! (an OTLP/gRPC `TraceService`) on loopback receives them.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use parking_lot::Mutex;
use tenancy::{Part, Running, start};
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::{GetMeRequest, LoginRequest};
use tenancy_runtime::SystemClock;
use tenancy_runtime::config::{Config, ServiceName};
use tenancy_testkit::{TestDatabase, test_config};
use tokio::io::AsyncBufReadExt as _;

use crate::gateway::{Suite, bearer_with, channel};

const SUITE_ENV: &str = "TENANCY_E2E_TRACED_SUITE";
const READY: &str = "traced suite serving:";

/// One exported span, flattened.
#[derive(Clone, Debug)]
struct Exported {
    service_name: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: Vec<(String, String)>,
}

impl Exported {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The collector stand-in: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Exported>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let text = |value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match value
            .as_ref()
            .and_then(|v| v.value.as_ref())
        {
            Some(Value::StringValue(s)) => s.clone(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let mut kept = self.0.lock();
        for resource in request.into_inner().resource_spans {
            let service_name = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| text(&a.value))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    kept.push(Exported {
                        service_name: service_name.clone(),
                        name: span.name.clone(),
                        kind: span.kind,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(&a.value)))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The entry point of the traced suite process (run by the test below,
/// never on its own): the whole suite, exporting spans, until its stdin
/// closes.
#[test]
#[ignore = "the traced suite process of the traces test, started by it"]
fn traced_suite_process() {
    let Ok(config) = std::env::var(SUITE_ENV) else {
        return;
    };
    let config: Config = serde_json::from_str(&config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let telemetry = {
        let _entered = runtime.enter();
        tenancy_runtime::telemetry::init(
            config.log_format,
            &config.log_filter,
            &config.otel,
            Part::All.service_name(),
        )
        .unwrap()
    };
    assert!(telemetry.exports());
    runtime.block_on(async move {
        let running = start(config, Part::All, Arc::new(SystemClock))
            .await
            .unwrap();
        println!(
            "{READY} {} {}",
            running.gateway.unwrap(),
            running.service(ServiceName::Contacts).unwrap()
        );
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
            })
            .await;
        };
        running.run_until(stdin_closed).await.unwrap();
    });
    {
        let _entered = runtime.enter();
        telemetry.shutdown();
    }
    std::process::exit(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_get_me_through_the_gateway_is_one_trace_of_gateway_and_identity_spans() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let database = Arc::new(TestDatabase::new("traces").await);
    let mut config = test_config(&database);
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    config.log_filter = "warn".into();
    config.otel.endpoint = Some(format!("http://{collector_address}"));
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "traces::traced_suite_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SUITE_ENV, serde_json::to_string(&config).unwrap())
        // Export within a fraction of a second, not the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, addresses)) = line.split_once(READY) {
                return addresses.to_owned();
            }
        }
        panic!("the traced suite ended before serving");
    })
    .await
    .expect("the traced suite did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut addresses = ready.split_whitespace().map(|a| a.parse().unwrap());
    let (gateway, contacts) = (addresses.next().unwrap(), addresses.next().unwrap());

    let suite = Suite {
        running: Running::listing(vec![(ServiceName::Contacts, contacts)]),
        gateway: channel(gateway).await,
        config,
        database,
    };
    suite.wait_ready().await;
    let token = suite.user("ada@example.com").await;

    // The client's own trace: every span of the call belongs to it.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    IdentityServiceClient::with_interceptor(
        suite.gateway.clone(),
        bearer_with(&token, vec![("traceparent", traceparent)]),
    )
    .get_me(GetMeRequest::default())
    .await
    .unwrap();

    let method = "tenancy.identity.v1.IdentityService/GetMe";
    let deadline = Instant::now() + Duration::from_secs(30);
    let (gateway_span, identity_span) = loop {
        let spans: Vec<Exported> = collector
            .0
            .lock()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        let at = |part: &str| {
            spans
                .iter()
                .find(|s| s.name == method && s.attribute("part") == Some(part))
                .cloned()
        };
        if let (Some(g), Some(i)) = (at("gateway"), at("identity")) {
            break (g, i);
        }
        assert!(
            Instant::now() < deadline,
            "no gateway and identity spans of trace {trace_id} after 30 s: {spans:#?}; all: {:#?}",
            collector
                .0
                .lock()
                .iter()
                .map(|s| (&s.name, &s.trace_id, s.attribute("part")))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The gateway's span is the client's child, the identity's the
    // gateway's: one trace, in call order.
    assert_eq!(gateway_span.parent_span_id, client_span);
    assert_eq!(identity_span.parent_span_id, gateway_span.span_id);
    for span in [&gateway_span, &identity_span] {
        assert_eq!(span.kind, SpanKind::Server as i32, "{span:?}");
        assert_eq!(span.service_name, "tenancy");
        assert_eq!(span.attribute("rpc.system"), Some("grpc"));
        assert_eq!(
            span.attribute("rpc.service"),
            Some("tenancy.identity.v1.IdentityService")
        );
        assert_eq!(span.attribute("rpc.method"), Some("GetMe"));
        // Principal ids are span attributes; never a token.
        assert!(
            !span.attributes.iter().any(|(_, v)| v.contains(&token)),
            "{span:?}"
        );
    }

    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}

/// Without export (this process installs no exporter) the gateway makes no
/// span per call, yet the client's trace goes on: the gateway's access line
/// and the line identity writes while serving the call (the login's
/// security event) carry the trace id of the client's `traceparent`.
// One thread: the suite's tasks log under this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn without_export_the_clients_trace_id_is_in_the_gateways_and_services_log_lines() {
    let lines = tenancy_runtime::telemetry::LogLines::default();
    let _logs = tracing::subscriber::set_default(tenancy_runtime::telemetry::json_logs_to(
        "info",
        lines.clone(),
    ));
    assert!(!tenancy_runtime::telemetry::exporting());
    let suite = Suite::start(|_| {}).await;
    let email = "traced@example.com";
    suite.user(email).await;

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent: tonic::metadata::MetadataValue<_> =
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap();
    IdentityServiceClient::with_interceptor(
        suite.gateway.clone(),
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("traceparent", traceparent.clone());
            Ok(request)
        },
    )
    .login(LoginRequest {
        email: email.into(),
        password: crate::gateway::PASSWORD.into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let login = "/tenancy.identity.v1.IdentityService/Login";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logged = lines.json();
        let in_trace = |l: &&serde_json::Value| {
            l["trace_id"] == trace_id.as_str() || l["span"]["trace_id"] == trace_id.as_str()
        };
        let access = logged.iter().filter(in_trace).find(|l| {
            l["target"] == "tenancy_gateway::access" && l["method"] == login && l["code"] == 0
        });
        let event = logged
            .iter()
            .filter(in_trace)
            .find(|l| l["event"] == "login.success");
        if let (Some(_), Some(event)) = (access, event) {
            assert_eq!(event["span"]["method"], login, "{event}");
            assert_eq!(event["span"]["part"], "identity", "{event}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no access line and login.success in trace {trace_id}: {logged:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
