//! The admin HTTP API an operator reads (`quorate agent --http`), also for
//! embedders that want it on their own member.
//!
//! `GET /v1/status`, `GET /v1/members`, `POST /v1/leave`, `GET /v1/health`
//! (200 only once joined with a leader known) and `GET /metrics` in the
//! Prometheus text format. The replicated KV store: `GET`, `PUT` (the body is
//! the value; `?cas=REV` writes only at that revision, 0 for "absent") and
//! `DELETE /v1/kv/{key}`, and `GET /v1/kv?prefix=P&limit=N`: writes go
//! through the log, reads are linearizable (ReadIndex). `GET
//! /v1/watch?prefix=P&after=REV` streams every change after `REV` as one JSON
//! object per line. `GET /v1/routes` lists the live members serving modules
//! (their `module`, `version` and `endpoints` tags). Not built under madsim:
//! the simulator drives the library directly.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use quorate_core::rsm::kv::KvChange;
use quorate_core::{MemberId, MemberInfo};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, Error};
use crate::kv::Watch;
use crate::stats::STABLE_BUCKETS;

/// A running admin server; dropping it stops the server.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the admin API for `cluster` on `addr` (port 0 picks one).
pub async fn serve(cluster: Arc<Cluster>, addr: SocketAddr) -> io::Result<AdminServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let router = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/members", get(members))
        .route("/v1/leave", post(leave))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/kv", get(kv_list))
        .route("/v1/watch", get(kv_watch))
        .route("/v1/routes", get(routes))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .with_state(cluster);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "admin HTTP server stopped");
        }
    });
    Ok(AdminServer { addr, task })
}

fn member_json(member: &MemberInfo) -> Value {
    let tags: serde_json::Map<String, Value> =
        member.tags.iter().map(|(key, value)| (key.to_owned(), Value::String(value.to_owned()))).collect();
    json!({
        "name": member.name.as_str(),
        "id": member.id.to_string(),
        "addr": member.addr.to_string(),
        "state": member.state.as_str(),
        "incarnation": member.incarnation,
        "leaving": member.leaving,
        "tags": tags,
    })
}

fn name_of(members: &[MemberInfo], id: MemberId) -> String {
    members.iter().find(|m| m.id == id).map_or_else(|| id.to_string(), |m| m.name.to_string())
}

async fn status(State(cluster): State<Arc<Cluster>>) -> impl IntoResponse {
    let members = cluster.members();
    let view = cluster.view();
    let leader = cluster.leader();
    axum::Json(json!({
        "name": cluster.name(),
        "id": cluster.id().to_string(),
        "addr": cluster.addr().to_string(),
        "boot_id": cluster.boot_id(),
        "term": cluster.term(),
        "leader": leader.map(|id| name_of(&members, id)),
        "leader_id": leader.map(|id| id.to_string()),
        "is_leader": cluster.is_leader(),
        "epoch": view.as_ref().map_or(0, |v| v.epoch),
        "stable": cluster.is_stable(),
        "active": cluster.is_active(),
        "view": view.as_ref().map(|v| v.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>()).unwrap_or_default(),
        "members": members.iter().map(member_json).collect::<Vec<_>>(),
    }))
}

async fn members(State(cluster): State<Arc<Cluster>>) -> impl IntoResponse {
    axum::Json(Value::Array(cluster.members().iter().map(member_json).collect()))
}

async fn leave(State(cluster): State<Arc<Cluster>>) -> impl IntoResponse {
    // The leave runs on; the caller watches /v1/status to see it end.
    let leaving = cluster.clone();
    tokio::spawn(async move {
        if let Err(error) = leaving.leave().await {
            tracing::warn!(%error, "leave requested over HTTP failed");
        }
    });
    (StatusCode::ACCEPTED, axum::Json(json!({ "leaving": true })))
}

async fn health(State(cluster): State<Arc<Cluster>>) -> Response {
    let problem = if !cluster.is_joined() {
        Some("not joined to any other member")
    } else if cluster.leader().is_none() {
        Some("no leader known")
    } else {
        None
    };
    match problem {
        None => (StatusCode::OK, axum::Json(json!({ "status": "ok" }))).into_response(),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "status": "unavailable", "reason": reason })))
                .into_response()
        }
    }
}

async fn metrics(State(cluster): State<Arc<Cluster>>) -> Response {
    let body = render_metrics(&cluster);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// The Prometheus text exposition of a member's metrics.
pub fn render_metrics(cluster: &Cluster) -> String {
    let mut out = Exposition::default();
    let members = cluster.members();
    out.family("quorate_members", "gauge", "Members this member knows, by state.");
    for state in ["alive", "suspect", "dead", "left"] {
        let count = members.iter().filter(|m| m.state.as_str() == state).count();
        out.sample("quorate_members", &[("state", state)], count as f64);
    }
    let view = cluster.view();
    for (name, kind, help, value) in [
        ("quorate_term", "gauge", "The current Raft term.", cluster.term() as f64),
        ("quorate_epoch", "gauge", "The newest committed view's epoch.", view.as_ref().map_or(0, |v| v.epoch) as f64),
        ("quorate_is_leader", "gauge", "1 if this member leads.", f64::from(u8::from(cluster.is_leader()))),
        ("quorate_stable", "gauge", "1 if the newest view is stable.", f64::from(u8::from(cluster.is_stable()))),
        (
            "quorate_active",
            "gauge",
            "1 if this member is in the newest view.",
            f64::from(u8::from(cluster.is_active())),
        ),
        ("quorate_boot_id", "gauge", "This process's boot id.", cluster.boot_id() as f64),
    ] {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
    let stats = cluster.stats();
    out.family("quorate_leader_changes_total", "counter", "How often the known leader changed.");
    out.sample("quorate_leader_changes_total", &[], stats.leader_changes as f64);
    let metrics = cluster.metrics();
    out.family("quorate_messages_sent_total", "counter", "Messages sent, by kind.");
    for (kind, count) in &metrics.sent {
        out.sample("quorate_messages_sent_total", &[("kind", kind)], *count as f64);
    }
    out.family("quorate_messages_received_total", "counter", "Messages received and accepted, by kind.");
    for (kind, count) in &metrics.received {
        out.sample("quorate_messages_received_total", &[("kind", kind)], *count as f64);
    }
    out.family("quorate_messages_rejected_total", "counter", "Messages refused, by reason.");
    for (reason, count) in &metrics.rejected {
        out.sample("quorate_messages_rejected_total", &[("reason", reason.as_str())], *count as f64);
    }
    for (name, help, value) in [
        ("quorate_bytes_sent_total", "Bytes sent, envelopes included.", metrics.bytes_sent),
        ("quorate_bytes_received_total", "Bytes received, rejected ones included.", metrics.bytes_received),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], value as f64);
    }
    let transport = cluster.transport_counters();
    out.family("quorate_transport_dropped_total", "counter", "What the transport dropped, by cause.");
    for (what, counter) in [
        ("datagrams_received_while_full", &transport.datagrams_dropped),
        ("datagram_send_errors", &transport.datagram_send_errors),
        ("frames", &transport.frames_dropped),
        ("frames_refused", &transport.frames_refused),
        ("connections_refused", &transport.connections_refused),
    ] {
        out.sample("quorate_transport_dropped_total", &[("what", what)], counter.load(Ordering::Relaxed) as f64);
    }
    let histogram = &stats.rebalance_to_stable;
    let name = "quorate_rebalance_to_stable_seconds";
    out.family(name, "histogram", "On the leader: from a view's commit to its Stable.");
    for (bound, count) in STABLE_BUCKETS.iter().zip(histogram.buckets) {
        out.sample(&format!("{name}_bucket"), &[("le", &bound.to_string())], count as f64);
    }
    out.sample(&format!("{name}_bucket"), &[("le", "+Inf")], histogram.count as f64);
    out.sample(&format!("{name}_sum"), &[], histogram.sum);
    out.sample(&format!("{name}_count"), &[], histogram.count as f64);
    out.text
}

/// Builds Prometheus text exposition format 0.0.4.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (key, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Escapes a label value as the exposition format requires.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("line\nbreak"), "line\\nbreak");
        let mut out = Exposition::default();
        out.sample("x", &[("k", "v\"")], 1.5);
        assert_eq!(out.text, "x{k=\"v\\\"\"} 1.5\n");
    }
}

// ----- KV ------------------------------------------------------------------------------------

/// A KV value as JSON: text when it is UTF-8, else hex, so nothing is lost.
fn value_json(value: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(value) {
        Ok(text) => ("value", Value::String(text.to_owned())),
        Err(_) => ("value_hex", Value::String(value.iter().map(|byte| format!("{byte:02x}")).collect())),
    }
}

fn entry_json(key: &str, entry: &quorate_core::rsm::kv::KvEntry) -> Value {
    let (field, value) = value_json(&entry.value);
    let mut object = json!({ "key": key, "created": entry.created, "modified": entry.modified });
    object[field] = value;
    object
}

/// One KV change as a line of a watch.
fn change_json(change: &KvChange) -> Value {
    let mut object = json!({ "revision": change.revision, "key": change.key });
    match &change.value {
        Some(value) => {
            let (field, value) = value_json(value);
            object[field] = value;
        }
        None => object["deleted"] = Value::Bool(true),
    }
    object
}

#[derive(serde::Deserialize)]
struct WatchQuery {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    after: u64,
}

/// A watch as newline-delimited JSON, until the client goes away or the
/// watch ends (its last line then says why).
struct WatchLines(Watch);

impl futures_core::Stream for WatchLines {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_next(cx).map(|item| {
            item.map(|item| {
                let line = match item {
                    Ok(change) => change_json(&change),
                    Err(error) => json!({ "error": error.to_string() }),
                };
                Ok(Bytes::from(line.to_string() + "\n"))
            })
        })
    }
}

async fn kv_watch(State(cluster): State<Arc<Cluster>>, Query(query): Query<WatchQuery>) -> Response {
    let watch = cluster.kv().watch(query.prefix, query.after);
    ([(header::CONTENT_TYPE, "application/x-ndjson")], axum::body::Body::from_stream(WatchLines(watch))).into_response()
}

async fn routes(State(cluster): State<Arc<Cluster>>) -> Response {
    let routes: Vec<Value> = cluster
        .routes()
        .into_iter()
        .map(|route| {
            json!({
                "module": route.module,
                "version": route.version,
                "member": route.member,
                "id": route.id.to_string(),
                "endpoints": route.endpoints,
            })
        })
        .collect();
    axum::Json(Value::Array(routes)).into_response()
}

/// An `apply` that did not go through, as an HTTP answer: 503 with the last
/// known leader when no leader answered, 500 otherwise.
fn kv_error(error: Error) -> Response {
    let status = match &error {
        Error::Apply(quorate_core::rsm::ApplyError::Timeout { .. }) | Error::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, axum::Json(json!({ "error": error.to_string() }))).into_response()
}

async fn kv_get(State(cluster): State<Arc<Cluster>>, Path(key): Path<String>) -> Response {
    match cluster.kv().get(key.clone()).await {
        Ok(Some(entry)) => axum::Json(entry_json(&key, &entry)).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, axum::Json(json!({ "error": format!("no key {key:?}") }))).into_response(),
        Err(error) => kv_error(error),
    }
}

#[derive(serde::Deserialize)]
struct PutQuery {
    /// Write only if the key's revision is this (0: only if absent).
    cas: Option<u64>,
}

async fn kv_put(
    State(cluster): State<Arc<Cluster>>,
    Path(key): Path<String>,
    Query(query): Query<PutQuery>,
    body: Bytes,
) -> Response {
    let kv = cluster.kv();
    match query.cas {
        None => match kv.put(key, body.to_vec()).await {
            Ok(revision) => axum::Json(json!({ "revision": revision })).into_response(),
            Err(error) => kv_error(error),
        },
        Some(expected) => {
            let expected = (expected != 0).then_some(expected);
            match kv.compare_and_set(key, expected, body.to_vec()).await {
                Ok(Ok(revision)) => axum::Json(json!({ "revision": revision })).into_response(),
                Ok(Err(current)) => (
                    StatusCode::CONFLICT,
                    axum::Json(json!({ "error": "the key's revision differs", "current": current })),
                )
                    .into_response(),
                Err(error) => kv_error(error),
            }
        }
    }
}

async fn kv_delete(State(cluster): State<Arc<Cluster>>, Path(key): Path<String>) -> Response {
    match cluster.kv().delete(key).await {
        Ok(deleted) => axum::Json(json!({ "deleted": deleted })).into_response(),
        Err(error) => kv_error(error),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<u32>,
}

async fn kv_list(State(cluster): State<Arc<Cluster>>, Query(query): Query<ListQuery>) -> Response {
    match cluster.kv().list(query.prefix, query.limit.unwrap_or(1000)).await {
        Ok(entries) => {
            let entries: Vec<Value> = entries.iter().map(|(key, entry)| entry_json(key, entry)).collect();
            axum::Json(Value::Array(entries)).into_response()
        }
        Err(error) => kv_error(error),
    }
}
