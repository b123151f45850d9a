//! The Grafana dashboard and the alert rules of deploy/observability query
//! only series the services export, and the dashboard shows every metric
//! family there is: the series are read from this crate's own `/metrics`
//! rendering after one of each instrument was recorded.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;
use std::time::Duration;

use adapters_telemetry::metrics;

fn deploy_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/observability")
        .join(name);
    std::fs::read_to_string(&path).expect("a file of deploy/observability")
}

/// Every series name `/metrics` shows once each instrument has a value.
fn exported() -> BTreeSet<String> {
    let m = metrics::install("dashboard-test");
    metrics::rpc(
        "gateway",
        "/roaming.x.v1.X/Y",
        "0",
        Duration::from_millis(3),
    );
    metrics::breaker("payment", "open");
    metrics::outbox("reservation", 1, Duration::from_secs(1));
    metrics::redelivered("view");
    metrics::dead_lettered("view");
    metrics::reservation("reserved", "roaming", "");
    m.render()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// The `roaming_*` names in `text`.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("roaming_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // A name, not the end of a longer word (e.g. `x_roaming_y`).
        let word_start = at == 0
            || !rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if word_start {
            out.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// The queries of the dashboard: every `"expr"` and `"query"` string.
fn dashboard_queries(json: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["\"expr\": \"", "\"query\": \""] {
        let mut rest = json;
        while let Some(at) = rest.find(key) {
            let tail = &rest[at + key.len()..];
            let mut end = 0;
            let mut escaped = false;
            for (i, c) in tail.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = i;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            out.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn every_dashboard_and_alert_query_names_an_exported_series_and_every_metric_is_shown() {
    let exported = exported();
    assert!(
        exported.contains("roaming_rpc_server_requests_total"),
        "{exported:?}"
    );
    let dashboard = deploy_file("grafana-dashboard.json");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 10, "{queries:?}");
    let used: BTreeSet<String> = queries.iter().flat_map(|q| names(q)).collect();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries series no service exports: {unknown:?} (exported: {exported:?})"
    );
    let alerts = names(&deploy_file("prometheus-alerts.yaml"));
    let unknown: Vec<&String> = alerts.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the alert rules query series no service exports: {unknown:?}"
    );
    // Every family (a counter's `_total`, a histogram's `_bucket`, a gauge)
    // has a panel.
    let family = |series: &str| {
        ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| series.strip_suffix(s))
            .unwrap_or(series)
            .to_owned()
    };
    let shown: BTreeSet<String> = used.iter().map(|s| family(s)).collect();
    let missing: Vec<String> = exported
        .iter()
        .map(|s| family(s))
        .filter(|f| !shown.contains(f))
        .collect();
    assert!(missing.is_empty(), "metrics without a panel: {missing:?}");
}

#[test]
fn names_are_found_whole() {
    assert_eq!(
        names("rate(roaming_a_total[5m]) / x_roaming_b + roaming_c"),
        ["roaming_a_total", "roaming_c"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
}
