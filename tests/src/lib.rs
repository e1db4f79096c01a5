//! Helpers for the integration tests: start members on loopback and wait for
//! conditions with a deadline (never a bare sleep).

use std::net::SocketAddr;
use std::time::Duration;

use quorate::{Cluster, Profile, State};

/// A member named `name` of cluster `test` on a free loopback port, joining `seed`.
pub async fn start(name: &str, seed: Option<SocketAddr>) -> Cluster {
    Cluster::builder()
        .cluster("test")
        .node(name)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .profile(Profile::Fast)
        .join(seed)
        .start()
        .await
        .unwrap_or_else(|error| panic!("{name} failed to start: {error}"))
}

/// `count` members, all joined through the first.
pub async fn start_cluster(count: usize) -> Vec<Cluster> {
    let first = start("m0", None).await;
    let seed = first.addr();
    let mut members = vec![first];
    for index in 1..count {
        members.push(start(&format!("m{index}"), Some(seed)).await);
    }
    members
}

/// Polls `done` every few milliseconds; panics naming `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether every member in `members` holds exactly those members alive.
pub fn all_see_all(members: &[&Cluster]) -> bool {
    let mut expected: Vec<_> = members.iter().map(|m| m.id()).collect();
    expected.sort();
    members.iter().all(|member| {
        let mut alive: Vec<_> = member.members().iter().filter(|i| i.state == State::Alive).map(|i| i.id).collect();
        alive.sort();
        alive == expected
    })
}
