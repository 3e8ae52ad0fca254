//! Structured logs with `tracing` (text for people, JSON for collectors)
//! and traces with OpenTelemetry.
//!
//! Every RPC a part serves is a span (`grpc`, named after the method, with
//! the stable RPC semantic-convention attributes `rpc.system`,
//! `rpc.service`, `rpc.method`); its parent is the W3C `traceparent` the
//! caller sent ([`accept_parent`]): a client's at the gateway, the
//! gateway's or another part's inside. Calls a part makes carry its current
//! span as their `traceparent` ([`inject`]), so one client call is one
//! trace across every part it touches. The span's `trace_id` is a field of
//! every log line written inside it.
//!
//! Spans are exported over OTLP/gRPC (batched, off the request path) only
//! when `otel.endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set; without,
//! trace ids are still made, passed on and logged. The gateway, whose CPU
//! per call is what it is measured by, then makes no span per call at all
//! ([`ServerCall`]): it keeps the call's trace context itself.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{
    SpanContext, TraceContextExt as _, TraceFlags, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{ConfigError, LogFormat, OtelConfig};

/// What [`init`] installed; [`Telemetry::shutdown`] sends the spans still
/// buffered.
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter (at most a few seconds).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "trace exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber: logs in `format` filtered by `filter`
/// (`RUST_LOG` overrides it), and spans as OpenTelemetry spans of
/// `service_name`, exported as `otel` says. Calling it twice is harmless
/// (tests start many servers in one process): the first call wins.
///
/// Needs a tokio runtime when spans are exported (the OTLP client runs on
/// it): call it inside one.
pub fn init(
    format: LogFormat,
    filter: &str,
    otel: &OtelConfig,
    service_name: &str,
) -> Result<Telemetry, ConfigError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    let exported = match otel.endpoint() {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| ConfigError::new("otel.endpoint", e))?;
            builder = builder.with_batch_exporter(exporter);
            true
        }
        None => false,
    };
    let provider = builder.build();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let installed = subscriber(format, filter, &provider, std::io::stderr, ansi).try_init();
    if installed.is_ok() && exported {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry {
        provider: (installed.is_ok() && exported).then_some(provider),
    })
}

/// Whether this process exports spans: set by [`init`] when it installed
/// an exporter, never unset.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (`otel.endpoint` was set when [`init`]
/// installed the subscriber).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The JSON log subscriber [`init`] installs for `log_format = "json"`
/// (at `filter`, spans not exported), writing to `writer` instead of
/// stderr: for tests that check what a log collector receives, installed
/// with `tracing::subscriber::set_default`.
pub fn json_logs_to<W>(filter: &str, writer: W) -> impl tracing::Subscriber + Send + Sync + use<W>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let provider = SdkTracerProvider::builder().build();
    subscriber(
        LogFormat::Json,
        EnvFilter::new(filter),
        &provider,
        writer,
        false,
    )
}

/// What a log collector receives from [`json_logs_to`]`(filter,
/// lines.clone())`: every line written, in order, for tests to read.
#[derive(Clone, Default)]
pub struct LogLines(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl LogLines {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }

    /// Every line written so far, each a JSON object (a line that is not
    /// JSON, which [`json_logs_to`] never writes, as a JSON string).
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| l.into()))
            .collect()
    }
}

impl std::io::Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogLines {
    type Writer = LogLines;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The subscriber [`init`] installs, writing logs to `writer`.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    provider: &SdkTracerProvider,
    writer: W,
    ansi: bool,
) -> impl tracing::Subscriber + Send + Sync + 'static + use<W>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // Spans (the RPCs, at INFO) go to OpenTelemetry whatever the log
    // filter says; events only when they are warnings or errors (span
    // events, for what went wrong in the call).
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("tenancy"))
        // Every call's span is entered and left at each poll of its
        // future: the layer's defaults read the clock there (busy/idle
        // time) and attach the OpenTelemetry context (for code reading
        // `Context::current()`; ours links spans through the tracing
        // parent and `span.context()`), and add thread and source-location
        // attributes to every span. None of it is in the RPC conventions,
        // and it was part of what tracing cost the gateway per call (issue
        // 19, README: Performance).
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            let level = *metadata.level();
            if metadata.is_span() {
                level <= tracing::Level::INFO
            } else {
                level <= tracing::Level::WARN
            }
        }));
    // Log lines carry the fields of the span they are written in: the
    // RPC's method, request id, trace id, user and account.
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    };
    // The RPC spans stay known to the log layer whatever its level, so a
    // warning still names its call.
    let rpc_spans = tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.is_span() && *metadata.level() <= tracing::Level::INFO
    });
    tracing_subscriber::registry()
        .with(spans)
        .with(logs.with_filter(filter.or(rpc_spans)))
}

/// Makes the caller's `traceparent` (and `tracestate`) in `headers` the
/// parent of `span`, and records the trace id in its `trace_id` field.
/// Without a valid `traceparent` the span starts a trace of its own.
pub fn accept_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    adopt_parent(span, headers);
}

/// [`accept_parent`], returning the span's own context as it now stands.
fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) -> SpanContext {
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let context = span.context().span().span_context().clone();
    if context.is_valid() {
        span.record("trace_id", context.trace_id().to_string());
    }
    context
}

/// The trace `span` belongs to, as 32 hex digits; `None` without the
/// OpenTelemetry layer.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let trace = context.span().span_context().trace_id();
    (trace != opentelemetry::trace::TraceId::INVALID).then(|| trace.to_string())
}

/// Writes `span` as the `traceparent` (and `tracestate`) of a call about
/// to be sent, replacing whatever the headers carried.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    inject_context(span.context().span().span_context(), headers);
}

/// Writes `context` as the `traceparent` (and `tracestate`) of a call
/// about to be sent, replacing whatever the headers carried; an invalid
/// context writes none.
fn inject_context(context: &SpanContext, headers: &mut http::HeaderMap) {
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    if context.is_valid() {
        let context = opentelemetry::Context::new().with_remote_span_context(context.clone());
        TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
    }
}

tokio::task_local! {
    /// The call being served without a span of its own ([`ServerCall`]
    /// without export): its trace context is the parent of the calls it
    /// makes ([`client_span`]), and what it names is in the log lines
    /// written meanwhile ([`served_span`]).
    static CALL: std::sync::Arc<Served>;
}

/// What a call served without a span of its own is known by.
struct Served {
    /// Its trace id and its own span id.
    context: SpanContext,
    part: &'static str,
    method: Box<str>,
    request_id: Box<str>,
}

impl Served {
    /// A span with the fields every served call's log lines carry
    /// (`method`, `request_id`, `trace_id`, `part`, `user`), to write a
    /// line in. Made only when a line is written.
    fn log_span(&self, user: Option<&str>) -> tracing::Span {
        tracing::info_span!(
            "grpc",
            part = self.part,
            method = &*self.method,
            request_id = &*self.request_id,
            trace_id = %self.context.trace_id(),
            user,
            account = tracing::field::Empty,
        )
    }
}

/// The span a log line written while serving a call belongs in, for code
/// that does not hold the call ([`ServerCall`]): without export, one made
/// now from the call's trace context, method and request id; with export
/// (or outside a served call) none, as the current span already is the
/// call's. Enter it around the line:
/// `served_span().in_scope(|| tracing::warn!(…))`.
pub fn served_span() -> tracing::Span {
    CALL.try_with(|served| served.log_span(None))
        .unwrap_or_else(|_| tracing::Span::none())
}

/// One RPC the gateway serves, as traces and logs see it.
///
/// With export on, it is the call's span ([`server_span`], the caller's
/// `traceparent` its parent), as at every service. Without export it is no
/// span at all: a span per call (stored, entered and left at every poll of
/// the call, its fields formatted for the log layer, an OpenTelemetry span
/// built and dropped at its end) was most of what tracing cost the
/// gateway's CPU (issue 19, README: Performance), for nothing a reader
/// sees. The call keeps its trace context instead: the caller's trace (or
/// a new one) and a span id of its own, which it passes on ([`Self::inject`],
/// and to calls the gateway itself makes while serving it, through
/// [`Self::instrument`]) and logs (the access line's `trace_id`; a warning
/// is written in [`Self::log_span`]). What a service and a log reader see
/// is the same either way.
pub struct ServerCall {
    /// The exported span; `None` without export.
    span: Option<tracing::Span>,
    /// This call's trace context: its trace id and its own span id; with
    /// its names when there is no span.
    served: std::sync::Arc<Served>,
}

impl ServerCall {
    /// The call of `path` served by `part`, in the trace of the caller's
    /// `traceparent` in `headers` (a new trace without a valid one).
    pub fn start(
        path: &str,
        part: &'static str,
        request_id: &str,
        headers: &http::HeaderMap,
    ) -> Self {
        Self::start_as(exporting(), path, part, request_id, headers)
    }

    fn start_as(
        exported: bool,
        path: &str,
        part: &'static str,
        request_id: &str,
        headers: &http::HeaderMap,
    ) -> Self {
        if exported {
            let span = server_span(path, part, request_id);
            let context = adopt_parent(&span, headers);
            return Self {
                span: Some(span),
                // The span names the call.
                served: std::sync::Arc::new(Served {
                    context,
                    part,
                    method: Box::default(),
                    request_id: Box::default(),
                }),
            };
        }
        let parent = TraceContextPropagator::new()
            .extract_with_context(&opentelemetry::Context::new(), &Headers(headers));
        let parent = parent.span().span_context().clone();
        let ids = RandomIdGenerator::default();
        // As the SDK's default sampler (parent-based, else always on)
        // decides for a span: the caller's flags, or sampled.
        let context = if parent.is_valid() {
            SpanContext::new(
                parent.trace_id(),
                ids.new_span_id(),
                parent.trace_flags(),
                false,
                parent.trace_state().clone(),
            )
        } else {
            SpanContext::new(
                ids.new_trace_id(),
                ids.new_span_id(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            )
        };
        Self {
            span: None,
            served: std::sync::Arc::new(Served {
                context,
                part,
                method: path.into(),
                request_id: request_id.into(),
            }),
        }
    }

    /// The call's trace id, as 32 hex digits (empty only if spans are
    /// exported by a subscriber without the OpenTelemetry layer).
    pub fn trace_id(&self) -> String {
        if self.served.context.is_valid() {
            self.served.context.trace_id().to_string()
        } else {
            String::new()
        }
    }

    /// Writes this call as the `traceparent` (and the caller's
    /// `tracestate`) of the request about to be forwarded, replacing
    /// whatever the headers carried.
    pub fn inject(&self, headers: &mut http::HeaderMap) {
        inject_context(&self.served.context, headers);
    }

    /// Records the calling user on the call's span (without one, the
    /// access line and [`Self::log_span`] name the user).
    pub fn record_user(&self, user: &str) {
        if let Some(span) = &self.span {
            span.record("user", user);
        }
    }

    /// Runs `call` as this call: inside its span, or without one with the
    /// call's trace context as the parent of the calls made meanwhile
    /// ([`client_span`]).
    pub async fn instrument<F: std::future::Future>(&self, call: F) -> F::Output {
        match &self.span {
            Some(span) => tracing::Instrument::instrument(call, span.clone()).await,
            None => CALL.scope(self.served.clone(), call).await,
        }
    }

    /// The span to write a log line of this call in: its own, or without
    /// one a span made now with the fields every served call's lines carry
    /// (`method`, `request_id`, `trace_id`, `part`, `user`). Made only when
    /// a line is written, which is rare on this path.
    pub fn log_span(&self, user: &str) -> tracing::Span {
        match &self.span {
            Some(span) => span.clone(),
            None => self.served.log_span(Some(user)),
        }
    }
}

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C vendor trace state.
const TRACESTATE: &str = "tracestate";

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The span of one RPC served, named after `path`
/// (`/package.Service/Method`), with the RPC semantic-convention
/// attributes; `part` is who serves it (`gateway`, `identity`, …). Its
/// `trace_id`, `user` and `account` are recorded later.
pub fn server_span(path: &str, part: &str, request_id: &str) -> tracing::Span {
    let name = path.trim_start_matches('/');
    let span = tracing::info_span!(
        "grpc",
        otel.name = name,
        otel.kind = "server",
        part,
        method = path,
        request_id,
        trace_id = tracing::field::Empty,
        user = tracing::field::Empty,
        account = tracing::field::Empty,
    );
    if exporting() {
        rpc_attributes(&span, name);
    }
    span
}

/// The span of one call a part makes to another, child of the current
/// span (the RPC being served, if any), or of the call served without a
/// span ([`ServerCall::instrument`]).
pub fn client_span(path: &str) -> tracing::Span {
    let name = path.trim_start_matches('/');
    let span = tracing::info_span!(
        "grpc.client",
        otel.name = name,
        otel.kind = "client",
        trace_id = tracing::field::Empty,
    );
    if let Ok(served) = CALL.try_with(|served| served.context.clone()) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(served));
    }
    // What is logged inside it (a replica ejected, no replica answering)
    // names the trace like the served call's own lines.
    if let Some(trace) = trace_id(&span) {
        span.record("trace_id", trace);
    }
    if exporting() {
        rpc_attributes(&span, name);
    }
    span
}

/// The RPC semantic-convention attributes of the span of `name`
/// (`package.Service/Method`): span attributes only, not log fields (the
/// log lines have `method`), so set only when spans are exported.
fn rpc_attributes(span: &tracing::Span, name: &str) {
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    span.set_attribute("rpc.system", "grpc");
    span.set_attribute("rpc.service", service.to_owned());
    span.set_attribute("rpc.method", method.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GetMe server span (request id `req-1`) and the headers of a call
    /// whose client sent trace 4bf92f35…, span 00f067aa0ba902b7.
    fn get_me_span_with_a_client_parent() -> (tracing::Span, http::HeaderMap) {
        let mut incoming = http::HeaderMap::new();
        incoming.insert(
            TRACEPARENT,
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let span = server_span(
            "/tenancy.identity.v1.IdentityService/GetMe",
            "identity",
            "req-1",
        );
        (span, incoming)
    }

    /// What a log collector receives.
    const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CLIENT_SPAN: &str = "00f067aa0ba902b7";
    const GET_ME: &str = "/tenancy.identity.v1.IdentityService/GetMe";

    /// A call the gateway serves, without export (no span) and with (its
    /// span): either way it is in the client's trace, passes on a
    /// `traceparent` naming itself (not the client's span), and a call made
    /// while serving it (API token introspection) is in the same trace.
    #[tokio::test]
    async fn a_served_call_passes_the_callers_trace_on_with_or_without_a_span() {
        let _logs = tracing::subscriber::set_default(json_logs_to("warn", std::io::sink));
        let (_, incoming) = get_me_span_with_a_client_parent();
        for exported in [false, true] {
            let call = ServerCall::start_as(exported, GET_ME, "gateway", "req-1", &incoming);
            assert_eq!(call.span.is_some(), exported, "a span only when exported");
            assert_eq!(call.trace_id(), CLIENT_TRACE);
            let mut forwarded = http::HeaderMap::new();
            forwarded.insert(TRACEPARENT, http::HeaderValue::from_static("forged"));
            call.inject(&mut forwarded);
            let sent = forwarded[TRACEPARENT].to_str().unwrap();
            assert!(
                sent.starts_with(&format!("00-{CLIENT_TRACE}-")) && sent.ends_with("-01"),
                "{sent}"
            );
            assert_eq!(sent.len(), 55, "{sent}");
            assert!(
                !sent.contains(CLIENT_SPAN),
                "the call is the parent: {sent}"
            );

            let introspection = "/tenancy.identity.v1.IdentityInternalService/IntrospectApiToken";
            let made = call.instrument(async { client_span(introspection) }).await;
            assert_eq!(trace_id(&made).as_deref(), Some(CLIENT_TRACE), "{exported}");
            let mut outgoing = http::HeaderMap::new();
            inject(&made, &mut outgoing);
            let made = outgoing[TRACEPARENT].to_str().unwrap();
            assert_ne!(made, sent, "the call made passes on its own span");
            // Outside the served call, a call starts a trace of its own.
            let alone = client_span(introspection);
            assert_ne!(trace_id(&alone).as_deref(), Some(CLIENT_TRACE));
        }
        // No traceparent, or garbage: a new trace, passed on.
        let mut garbage = http::HeaderMap::new();
        garbage.insert(TRACEPARENT, http::HeaderValue::from_static("00-zz-yy-01"));
        for headers in [http::HeaderMap::new(), garbage] {
            let call = ServerCall::start_as(false, GET_ME, "gateway", "req-2", &headers);
            let trace = call.trace_id();
            assert_eq!(trace.len(), 32, "{trace}");
            assert_ne!(trace, "0".repeat(32));
            let mut forwarded = http::HeaderMap::new();
            call.inject(&mut forwarded);
            let sent = forwarded[TRACEPARENT].to_str().unwrap();
            assert!(sent.starts_with(&format!("00-{trace}-")), "{sent}");
            let other = ServerCall::start_as(false, GET_ME, "gateway", "req-3", &headers);
            assert_ne!(other.trace_id(), trace, "each call its own trace");
        }
    }

    /// A warning about a call served without a span is written in one made
    /// for it: the JSON line carries the call's method, request id, trace
    /// id, part and user under `span`, as every served call's lines do.
    #[test]
    fn a_warning_about_a_call_without_a_span_carries_the_calls_fields() {
        let lines = LogLines::default();
        let subscriber = json_logs_to("warn", lines.clone());
        tracing::subscriber::with_default(subscriber, || {
            let (_, incoming) = get_me_span_with_a_client_parent();
            let call = ServerCall::start_as(false, GET_ME, "gateway", "req-1", &incoming);
            call.log_span("u-1")
                .in_scope(|| tracing::warn!("upstream call failed"));
        });
        let logged = lines.json();
        assert_eq!(logged.len(), 1, "{logged:?}");
        let span = &logged[0]["span"];
        assert_eq!(span["trace_id"], CLIENT_TRACE);
        assert_eq!(span["request_id"], "req-1");
        assert_eq!(span["method"], GET_ME);
        assert_eq!(span["part"], "gateway");
        assert_eq!(span["user"], "u-1");
    }

    /// A JSON log line written while serving an RPC names the method, the
    /// request id, the trace id and the principal, under `span`.
    #[test]
    fn json_log_lines_carry_the_request_and_trace_ids() {
        let lines = LogLines::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber(
            LogFormat::Json,
            EnvFilter::new("warn"),
            &provider,
            lines.clone(),
            false,
        );
        tracing::subscriber::with_default(subscriber, || {
            let (span, incoming) = get_me_span_with_a_client_parent();
            span.record("user", "u-1");
            accept_parent(&span, &incoming);
            span.in_scope(|| {
                tracing::info!("filtered out at warn");
                tracing::warn!(event = "login.locked", "a security event");
            });
        });
        let logged = lines.json();
        assert_eq!(logged.len(), 1, "{logged:?}");
        let line = &logged[0];
        assert_eq!(line["event"], "login.locked");
        assert_eq!(line["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["span"]["request_id"], "req-1");
        assert_eq!(
            line["span"]["method"],
            "/tenancy.identity.v1.IdentityService/GetMe"
        );
        assert_eq!(line["span"]["user"], "u-1");
    }

    /// The subscriber parts install (OpenTelemetry layer tuned for cost:
    /// no context activation): a call made while serving one is a child in
    /// the same trace, and passes itself on as the parent.
    #[test]
    fn the_installed_subscriber_links_a_call_made_while_serving_to_the_served_one() {
        let lines = LogLines::default();
        let subscriber = json_logs_to("warn", lines.clone());
        tracing::subscriber::with_default(subscriber, || {
            let (span, incoming) = get_me_span_with_a_client_parent();
            accept_parent(&span, &incoming);
            let mut served = http::HeaderMap::new();
            inject(&span, &mut served);
            let served = served[TRACEPARENT].to_str().unwrap().to_owned();
            let call =
                span.in_scope(|| client_span("/tenancy.account.v1.AccountService/GetAccount"));
            let mut outgoing = http::HeaderMap::new();
            inject(&call, &mut outgoing);
            let sent = outgoing[TRACEPARENT].to_str().unwrap();
            assert!(
                sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "the call is in the client's trace: {sent}"
            );
            assert_ne!(sent, served, "the call passes on its own span");
            assert_eq!(trace_id(&call), trace_id(&span));
            call.in_scope(|| tracing::warn!("no replica answered"));
        });
        // A line written while making the call names the trace too.
        let logged = lines.json();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0]["span"]["trace_id"], CLIENT_TRACE, "{logged:?}");
    }

    /// With the OpenTelemetry layer in place, a span takes the caller's
    /// trace id, records it, and passes on a `traceparent` of the same
    /// trace naming itself as the parent.
    #[test]
    fn a_traceparent_is_accepted_recorded_and_passed_on() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")));
        tracing::subscriber::with_default(subscriber, || {
            let (span, incoming) = get_me_span_with_a_client_parent();
            accept_parent(&span, &incoming);
            let mut outgoing = http::HeaderMap::new();
            outgoing.insert(TRACEPARENT, http::HeaderValue::from_static("forged"));
            inject(&span, &mut outgoing);
            let sent = outgoing[TRACEPARENT].to_str().unwrap();
            assert!(
                sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{sent}"
            );
            assert!(
                !sent.contains("00f067aa0ba902b7"),
                "the span is the new parent: {sent}"
            );

            // Garbage starts a trace of its own.
            let mut garbage = http::HeaderMap::new();
            garbage.insert(TRACEPARENT, http::HeaderValue::from_static("00-zz-yy-01"));
            let other = server_span("/x.Y/Z", "identity", "r");
            accept_parent(&other, &garbage);
            let mut out = http::HeaderMap::new();
            inject(&other, &mut out);
            let own = out[TRACEPARENT].to_str().unwrap();
            assert!(!own.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{own}");
            assert_eq!(own.len(), 55, "{own}");
        });
    }
}
