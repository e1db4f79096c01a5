//! Members over real loopback sockets: the tokio adapter end to end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quorate::{Cluster, Error, Event, State};
use quorate_core::wire::limits;
use quorate_tests::{all_see_all, eventually, start, start_cluster};
use tokio::io::AsyncWriteExt;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn five_members_converge_detect_a_crash_and_see_a_leave_as_a_leave() {
    let mut members = start_cluster(5).await;
    eventually("five members converge", LIMIT, || all_see_all(&members.iter().collect::<Vec<_>>())).await;

    let mut events = members[0].events();
    let crashed = members.pop().unwrap();
    let crashed_id = crashed.id();
    drop(crashed); // no goodbye: a crash to the others
    eventually("every survivor marks the crash dead", LIMIT, || {
        members.iter().all(|m| m.members().iter().any(|i| i.id == crashed_id && i.state == State::Dead))
    })
    .await;

    let leaver = members.pop().unwrap();
    let leaver_id = leaver.id();
    leaver.leave().await.unwrap();
    eventually("every member holds the leaver as left", LIMIT, || {
        members.iter().all(|m| m.members().iter().any(|i| i.id == leaver_id && i.state == State::Left))
    })
    .await;
    assert!(!leaver.is_running(), "a member stops once its leave completed");

    let mut failed = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::MemberFailed(info) = event {
            failed.push(info.id);
        }
    }
    assert_eq!(failed, [crashed_id], "only the crash is reported as a failure");
}

#[tokio::test]
async fn hostile_bytes_are_refused_and_the_member_keeps_working() {
    let members = start_cluster(2).await;
    eventually("two members converge", LIMIT, || all_see_all(&members.iter().collect::<Vec<_>>())).await;
    let target = members[1].addr();

    // Garbage and oversized datagrams.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(&[0xde, 0xad, 0xbe, 0xef], target).await.unwrap();
    udp.send_to(&vec![1u8; limits::MAX_DATAGRAM_BYTES + 100], target).await.unwrap();

    // A frame announcing more than the limit: the connection is closed, nothing allocated.
    let mut tcp = tokio::net::TcpStream::connect(target).await.unwrap();
    tcp.write_all(&(limits::MAX_FRAME_BYTES as u32 + 1).to_le_bytes()).await.unwrap();
    tcp.flush().await.unwrap();
    eventually("the oversized frame is refused", LIMIT, || {
        members[1].transport_counters().frames_refused.load(Ordering::Relaxed) == 1
    })
    .await;

    // Still a working member: a third member joins through it.
    let third = start("m2", Some(target)).await;
    let all = [&members[0], &members[1], &third];
    eventually("a third member joins through the attacked one", LIMIT, || all_see_all(&all)).await;
}

#[tokio::test]
async fn a_member_of_another_cluster_is_never_admitted() {
    let members = start_cluster(2).await;
    let stranger = Cluster::builder()
        .cluster("other")
        .node("stranger")
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .profile(quorate::Profile::Fast)
        .join([members[0].addr()])
        .start()
        .await
        .unwrap();
    eventually("the two members converge", LIMIT, || all_see_all(&members.iter().collect::<Vec<_>>())).await;
    // Give the stranger's join attempts several backoff rounds to have come and gone.
    let mut events = stranger.events();
    tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(event) = events.recv().await {
            assert!(!matches!(event, Event::Joined | Event::MemberJoined(_)), "the stranger was admitted: {event:?}");
        }
    })
    .await
    .unwrap_err();
    assert!(!stranger.is_joined());
    assert!(members.iter().all(|m| m.members().iter().all(|i| i.id != stranger.id())));
}

#[tokio::test]
async fn bad_builder_input_is_a_clear_error() {
    let missing = Cluster::builder().bind("127.0.0.1:0".parse().unwrap()).start().await;
    assert!(matches!(missing, Err(Error::MissingName)));

    let long = Cluster::builder().node("x".repeat(200)).bind("127.0.0.1:0".parse().unwrap()).start().await;
    assert!(matches!(long, Err(Error::Name(_))), "{:?}", long.err());

    let unspecified = Cluster::builder().node("a").bind("0.0.0.0:0".parse().unwrap()).start().await;
    assert!(matches!(unspecified, Err(Error::AdvertiseRequired(_))), "{:?}", unspecified.err());

    let taken = start("holder", None).await;
    let clash = Cluster::builder().node("b").bind(taken.addr()).start().await;
    assert!(matches!(clash, Err(Error::Bind { .. })), "{:?}", clash.err());

    let tag = Cluster::builder().node("c").tag("big", "v".repeat(limits::MAX_TAGS_BYTES + 1));
    assert!(matches!(tag, Err(Error::Tag(_))));
}

/// A bootstrapped cluster of `count` in-memory members (ephemeral voters
/// allowed, as in the demo), all joined through the first.
async fn raft_cluster(count: usize) -> Vec<Cluster> {
    raft_cluster_with(count, |_, builder| builder).await
}

/// [`raft_cluster`] with each member's builder passed through `configure`
/// (with its index) first.
async fn raft_cluster_with(
    count: usize,
    configure: impl Fn(usize, quorate::Builder) -> quorate::Builder,
) -> Vec<Cluster> {
    let mut members: Vec<Cluster> = Vec::new();
    for index in 0..count {
        let seed = members.first().map(Cluster::addr);
        let member = configure(index, Cluster::builder())
            .cluster("raft")
            .node(format!("r{index}"))
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .profile(quorate::Profile::Fast)
            .bootstrap_expect(count as u32)
            .allow_ephemeral_voters(true)
            .join(seed)
            .start()
            .await
            .unwrap();
        member.on_rebalance(|_, done| done.ack());
        members.push(member);
    }
    members
}

/// One leader known to all, and one stable view of exactly these members.
fn settled(members: &[&Cluster]) -> bool {
    let mut ids: Vec<_> = members.iter().map(|m| m.id()).collect();
    ids.sort();
    let leader = members[0].leader();
    leader.is_some()
        && members.iter().all(|m| {
            m.leader() == leader && m.is_stable() && m.view().is_some_and(|v| v.ids().collect::<Vec<_>>() == ids)
        })
}

#[tokio::test]
async fn five_members_reach_a_stable_view_and_only_the_leader_runs_on_cluster_stable() {
    let members = raft_cluster(5).await;
    let stable_calls: Vec<Arc<AtomicUsize>> = members
        .iter()
        .map(|member| {
            let calls = Arc::new(AtomicUsize::new(0));
            let counter = calls.clone();
            member.on_cluster_stable(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            });
            calls
        })
        .collect();
    eventually("one stable view of all five", LIMIT, || settled(&members.iter().collect::<Vec<_>>())).await;
    // The callback is asynchronous: give the leader's a moment to land.
    let leader = members.iter().position(|m| m.is_leader()).unwrap();
    eventually("the leader's on_cluster_stable ran", LIMIT, || stable_calls[leader].load(Ordering::SeqCst) > 0).await;
    for (index, calls) in stable_calls.iter().enumerate() {
        if index != leader {
            assert_eq!(calls.load(Ordering::SeqCst), 0, "r{index} is not the leader but ran on_cluster_stable");
        }
    }
    assert!(members.iter().all(|m| m.is_active() && m.primaries().len() == 5));
}

#[tokio::test]
async fn killing_the_leader_elects_a_new_one_and_a_stable_view_without_it() {
    let mut members = raft_cluster(5).await;
    eventually("a stable view of all five", LIMIT, || settled(&members.iter().collect::<Vec<_>>())).await;
    let leader = members.iter().position(|m| m.is_leader()).unwrap();
    let old = members.remove(leader);
    let (old_id, old_term) = (old.id(), old.term());
    drop(old); // a crash: no goodbye
    eventually("a new leader and a stable view of the survivors", LIMIT, || {
        settled(&members.iter().collect::<Vec<_>>())
    })
    .await;
    assert!(members.iter().all(|m| m.leader() != Some(old_id) && m.term() > old_term));
}

#[tokio::test]
async fn a_leaving_leader_hands_over_leadership_first_and_is_never_reported_failed() {
    let mut members = raft_cluster(3).await;
    eventually("a stable view of all three", LIMIT, || settled(&members.iter().collect::<Vec<_>>())).await;
    let mut events: Vec<_> = members.iter().map(Cluster::events).collect();
    let leader = members.iter().position(|m| m.is_leader()).unwrap();
    let leaving = members.remove(leader);
    let leaving_id = leaving.id();
    leaving.leave().await.unwrap();
    // By the time the leave completed, leadership had moved and the voter seat was given up.
    assert!(
        members.iter().all(|m| m.leader().is_some_and(|l| l != leaving_id)),
        "leadership moved before the leave ended"
    );
    eventually("a stable view of the two that stay", LIMIT, || settled(&members.iter().collect::<Vec<_>>())).await;
    for receiver in &mut events {
        while let Ok(event) = receiver.try_recv() {
            if let quorate::Event::MemberFailed(info) = event {
                assert_ne!(info.id, leaving_id, "a graceful leave was reported as a failure");
            }
        }
    }
}

/// Memory storage that fails every persist once `failing` is set, as a full
/// or dying disk would.
struct FailingStorage {
    inner: quorate::storage::MemoryStorage,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl quorate::storage::Storage for FailingStorage {
    fn load(&mut self) -> Result<quorate::storage::Loaded, quorate::storage::StorageError> {
        self.inner.load()
    }

    fn write(&mut self, writes: &[quorate_core::PersistState]) -> Result<(), quorate::storage::StorageError> {
        self.inner.write(writes)
    }

    fn sync(&mut self) -> Result<(), quorate::storage::StorageError> {
        if self.failing.load(Ordering::SeqCst) {
            let source = std::io::Error::other("no space left on the test device");
            return Err(quorate::storage::StorageError::Io { op: "fsync", path: "wal".into(), source });
        }
        self.inner.sync()
    }

    fn is_durable(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_storage_failure_stops_the_member_and_says_why() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storage = FailingStorage { inner: quorate::storage::MemoryStorage::new(), failing: failing.clone() };
    let leader = Cluster::builder()
        .cluster("test")
        .node("lone")
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .profile(quorate::Profile::Fast)
        .storage(storage)
        .bootstrap()
        .start()
        .await
        .unwrap();
    eventually("the lone member leads", LIMIT, || leader.is_leader()).await;
    failing.store(true, Ordering::SeqCst);
    // A newcomer makes the leader append (a learner, a view): that persist fails.
    let joiner = start("joiner", Some(leader.addr())).await;
    let stopped = tokio::time::timeout(LIMIT, leader.stopped()).await.expect("the member stopped");
    match stopped {
        Err(Error::Failed(reason)) => assert!(reason.contains("no space left"), "{reason}"),
        other => panic!("expected a storage failure, got {other:?}"),
    }
    assert!(!leader.is_running());
    joiner.shutdown().await;
}

#[tokio::test]
async fn counters_keep_moving_while_membership_is_quiet() {
    let members = start_cluster(2).await;
    let refs: Vec<&Cluster> = members.iter().collect();
    eventually("both members see each other", LIMIT, || all_see_all(&refs)).await;
    // Steady state: no events, no commits; probes still flow and must show.
    let sent = |member: &Cluster| member.metrics().sent.values().sum::<u64>();
    let before = sent(&members[0]);
    eventually("the published counters grow", LIMIT, || sent(&members[0]) > before + 10).await;
}

#[tokio::test]
async fn the_kv_store_answers_from_every_member_and_applies_each_write_once() {
    let members = raft_cluster(3).await;
    eventually("a settled cluster", LIMIT, || settled(&members.iter().collect::<Vec<_>>())).await;
    let follower = members.iter().find(|m| !m.is_leader()).unwrap();
    let other = members.iter().rfind(|m| !m.is_leader()).unwrap();

    assert_eq!(follower.kv().put("app/color", "blue").await.unwrap(), 1);
    let entry = other.kv().get("app/color").await.unwrap().expect("written");
    assert_eq!((entry.value.as_slice(), entry.modified), (&b"blue"[..], 1));

    // Compare-and-set: at the revision read, then stale.
    assert_eq!(other.kv().compare_and_set("app/color", Some(1), "green").await.unwrap(), Ok(2));
    assert_eq!(follower.kv().compare_and_set("app/color", Some(1), "red").await.unwrap(), Err(Some(2)));

    // Concurrent writers from every member: each applies exactly once.
    let writes = members.iter().enumerate().flat_map(|(m, member)| {
        (0..20).map(move |i| async move { member.kv().put(format!("app/n{m}-{i}"), "x").await.unwrap() })
    });
    let mut revisions = futures::future::join_all(writes).await;
    revisions.sort();
    assert_eq!(revisions, (3..=62).collect::<Vec<u64>>(), "60 writes, 60 distinct revisions, none twice");
    assert_eq!(members[0].kv().list("app/n", 1000).await.unwrap().len(), 60);
    assert!(members[1].kv().delete("app/color").await.unwrap());
    assert_eq!(members[2].kv().get("app/color").await.unwrap(), None);
    for member in members {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn an_apply_with_no_leader_fails_in_time_with_the_leader_it_knew() {
    let members = raft_cluster(3).await;
    eventually("a settled cluster", LIMIT, || settled(&members.iter().collect::<Vec<_>>())).await;
    let mut members = members;
    let leader = members.iter().position(Cluster::is_leader).unwrap();
    let lone = members.remove((leader + 1) % 3);
    // The other two stop: no quorum is left for the lone member.
    for member in members {
        member.shutdown().await;
    }
    let started = std::time::Instant::now();
    let result = lone.kv().put("k", "v").await;
    assert!(matches!(result, Err(Error::Apply(quorate::ApplyError::Timeout { .. }))), "{result:?}");
    // The fast profile's apply timeout is 3 s.
    assert!(started.elapsed() >= Duration::from_secs(2), "failed after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_watch_sees_every_change_under_its_prefix_in_order_from_any_member() {
    let members = raft_cluster(3).await;
    eventually("a settled cluster", LIMIT, || settled(&members.iter().collect::<Vec<_>>())).await;
    let kv = members[0].kv();
    kv.put("app/a", "1").await.unwrap();
    kv.put("other", "x").await.unwrap();
    // A watch from revision 0 replays what the store remembers; later changes follow.
    let mut watch = members[2].kv().watch("app/", 0);
    kv.put("app/b", "2").await.unwrap();
    assert!(members[1].kv().delete("app/a").await.unwrap());
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let change = tokio::time::timeout(LIMIT, watch.next()).await.expect("a change in time").unwrap().unwrap();
        seen.push((change.revision, change.key, change.value));
    }
    assert_eq!(
        seen,
        [
            (1, "app/a".to_owned(), Some(b"1".to_vec())),
            (3, "app/b".to_owned(), Some(b"2".to_vec())),
            (4, "app/a".to_owned(), None)
        ]
    );
    for member in members {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn routes_follow_the_module_tags_and_require_module_hears_each_change() {
    let members = raft_cluster_with(3, |index, builder| match index {
        0 => builder,
        _ => builder
            .tag("module", "billing")
            .unwrap()
            .tag("version", "1.4.2")
            .unwrap()
            .tag("endpoints", format!("10.0.0.{index}:8080, 10.0.0.{index}:9090"))
            .unwrap(),
    })
    .await;
    eventually("a settled cluster", LIMIT, || settled(&members.iter().collect::<Vec<_>>())).await;
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    members[0].require_module("billing", move |routes| {
        let _ = tx.send(routes.iter().map(|route| route.member.clone()).collect::<Vec<_>>());
    });
    let expect = |want: &[&str]| want.iter().map(|name| name.to_string()).collect::<Vec<_>>();
    let mut next = async || tokio::time::timeout(LIMIT, heard.recv()).await.expect("told in time").unwrap();
    assert_eq!(next().await, expect(&["r1", "r2"]));
    let routes = members[0].routes();
    assert_eq!(routes[0].endpoints, ["10.0.0.1:8080", "10.0.0.1:9090"]);
    assert_eq!((routes[0].module.as_str(), routes[0].version.as_str()), ("billing", "1.4.2"));
    // One billing member leaves: the handler hears the smaller set.
    let mut members = members;
    members.pop().unwrap().leave().await.unwrap();
    assert_eq!(next().await, expect(&["r1"]));
    for member in members {
        member.shutdown().await;
    }
}

#[tokio::test]
async fn module_configs_are_validated_versioned_and_delivered_to_their_module_with_a_timeout() {
    let members = raft_cluster_with(3, |index, builder| {
        let builder = builder
            .config_validator(|_, value| match value.first() {
                Some(b'{') => Ok(()),
                _ => Err("not a JSON object".into()),
            })
            .config_delivery_timeout(Duration::from_millis(300));
        if index == 2 { builder.tag("module", "billing").unwrap() } else { builder }
    })
    .await;
    eventually("a settled cluster", LIMIT, || settled(&members.iter().collect::<Vec<_>>())).await;
    let refused = members[0].set_module_config("billing", "password=hunter2").await;
    assert!(matches!(refused, Err(Error::InvalidConfig { .. })), "{refused:?}");
    assert_eq!(members[1].module_config("billing").await.unwrap(), None, "a refused config is not written");
    let v1 = members[0].set_module_config("billing", r#"{"rate": 1}"#).await.unwrap();

    // The first delivery of v1 outlasts the timeout: it is tried again.
    let (tx, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let tries = Arc::new(AtomicUsize::new(0));
    let counter = tries.clone();
    members[2].on_module_config(move |config| {
        let (tx, first) = (tx.clone(), counter.fetch_add(1, Ordering::SeqCst) == 0);
        async move {
            if first {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            let _ = tx.send((config.version, config.value));
            Ok(())
        }
    });
    let mut next = async || tokio::time::timeout(LIMIT, delivered.recv()).await.expect("delivered in time").unwrap();
    assert_eq!(next().await, (v1, Some(br#"{"rate": 1}"#.to_vec())));
    let v2 = members[1].set_module_config("billing", r#"{"rate": 2}"#).await.unwrap();
    assert_eq!(next().await, (v2, Some(br#"{"rate": 2}"#.to_vec())));
    assert!(tries.load(Ordering::SeqCst) >= 3, "the timed-out delivery was retried");
    let current = members[0].module_config("billing").await.unwrap().unwrap();
    assert_eq!(current.version, v2);
    assert!(!format!("{current:?}").contains("rate"), "a config's Debug never shows its value");
    for member in members {
        member.shutdown().await;
    }
}
