//! `tenancy admin gateway-status`: a gateway's sync state, read from its
//! metrics port (`metrics_listen`, plain HTTP, never the public port).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The streams a gateway follows, in the order shown.
const STREAMS: [&str; 2] = ["revocations", "policies"];

/// One stream's state as the gateway's metrics say.
#[derive(Default)]
struct Stream {
    caught_up: Option<f64>,
    position: Option<f64>,
    behind: Option<f64>,
    since_event: Option<f64>,
    since_message: Option<f64>,
    reconnects: Option<f64>,
}

/// Reads `http://{address}/metrics`, prints each stream's state, and fails
/// (exit status 1) unless every stream is caught up.
pub(crate) async fn show(address: &str) -> Result<(), String> {
    let text = scrape(address)
        .await
        .map_err(|e| format!("gateway: cannot read http://{address}/metrics: {e}"))?;
    let mut streams = parse(&text);
    if streams.is_empty() {
        return Err(format!(
            "gateway: http://{address}/metrics has no stream state (is it a gateway's metrics port?)"
        ));
    }
    println!(
        "{:<12} {:<10} {:>9} {:>14} {:>17} {:>19} {:>11}",
        "stream",
        "caught up",
        "position",
        "events behind",
        "since last event",
        "since last message",
        "reconnects"
    );
    let number = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.0}"));
    let seconds = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.1} s"));
    let mut behind = Vec::new();
    for name in STREAMS {
        let s = streams.remove(name).unwrap_or_default();
        let caught_up = s.caught_up == Some(1.0);
        if !caught_up {
            behind.push(name);
        }
        println!(
            "{:<12} {:<10} {:>9} {:>14} {:>17} {:>19} {:>11}",
            name,
            if caught_up { "yes" } else { "no" },
            number(s.position),
            number(s.behind),
            seconds(s.since_event),
            seconds(s.since_message),
            number(s.reconnects),
        );
    }
    if behind.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "gateway: not caught up ({}): it refuses authenticated calls until it is",
            behind.join(", ")
        ))
    }
}

/// The body of `GET /metrics` (HTTP/1.0: one response, then close).
async fn scrape(address: &str) -> Result<String, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: tenancy\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        // The metrics text is small; a bound keeps a wrong port harmless.
        stream
            .take(16 << 20)
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())??;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| "not an HTTP response".to_owned())?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        return Err(format!("answered {status:?}"));
    }
    Ok(body.to_owned())
}

/// The `tenancy_gateway_watch_*` samples of a Prometheus text, by stream.
fn parse(text: &str) -> BTreeMap<String, Stream> {
    let mut streams: BTreeMap<String, Stream> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let Some(stream) = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("stream=\""))
            .and_then(|l| l.split('"').next())
        else {
            continue;
        };
        let entry = streams.entry(stream.to_owned()).or_default();
        let slot = match name {
            "tenancy_gateway_watch_caught_up" => &mut entry.caught_up,
            "tenancy_gateway_watch_position" => &mut entry.position,
            "tenancy_gateway_watch_events_behind" => &mut entry.behind,
            "tenancy_gateway_watch_seconds_since_last_event" => &mut entry.since_event,
            "tenancy_gateway_watch_seconds_since_last_message" => &mut entry.since_message,
            "tenancy_gateway_watch_reconnects_total" => &mut entry.reconnects,
            _ => continue,
        };
        *slot = Some(value);
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_samples_are_read_by_name_and_stream_label() {
        let text = "# HELP x\n\
            tenancy_gateway_watch_caught_up{stream=\"policies\"} 1\n\
            tenancy_gateway_watch_position{part=\"gateway\",stream=\"revocations\"} 42\n\
            tenancy_gateway_watch_reconnects_total{stream=\"revocations\"} 3\n\
            tenancy_gateway_connections 5\n";
        let streams = parse(text);
        assert_eq!(streams["policies"].caught_up, Some(1.0));
        assert_eq!(streams["revocations"].position, Some(42.0));
        assert_eq!(streams["revocations"].reconnects, Some(3.0));
        assert_eq!(streams["revocations"].caught_up, None);
        assert_eq!(streams.len(), 2);
    }
}
