//! Members over real loopback sockets: the tokio adapter end to end.

use std::net::SocketAddr;
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
        members[1].transport_counters().frames_refused.load(std::sync::atomic::Ordering::Relaxed) == 1
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
