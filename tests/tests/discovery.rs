//! Discovery over real sockets and files: members find each other through a
//! file, a DNS name and DNS SRV records, and the TTL cache asks its source at
//! most once per TTL.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quorate::discovery::{
    self, Cached, Discovery, DiscoveryError, DnsDiscovery, FileDiscovery, PeersFuture, SpecError, SrvDiscovery,
    StaticDiscovery,
};
use quorate::{Cluster, Profile};
use quorate_tests::{all_see_all, eventually, start};

const LIMIT: Duration = Duration::from_secs(10);

async fn start_with(name: &str, discovery: impl Discovery) -> Cluster {
    Cluster::builder()
        .cluster("test")
        .node(name)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .profile(Profile::Fast)
        .discovery(discovery)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_member_finds_the_cluster_through_an_address_file() {
    let first = start("m0", None).await;
    let dir = std::env::temp_dir().join(format!("quorate-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("peers");
    let text = format!(
        "# the seed, by address and by name\n{}\n\nlocalhost:{}  # same member\n127.0.0.1:1\n",
        first.addr(),
        first.addr().port()
    );
    std::fs::write(&path, text).unwrap();
    let found = FileDiscovery::new(&path).peers().await.unwrap();
    assert!(found.contains(&first.addr()), "{found:?}");
    assert!(found.contains(&SocketAddr::from(([127, 0, 0, 1], 1))), "{found:?}");

    let second = start_with("m1", FileDiscovery::new(&path)).await;
    eventually("the member found through the file joins", LIMIT, || all_see_all(&[&first, &second])).await;

    std::fs::write(&path, "not-an-address\n").unwrap();
    let error = FileDiscovery::new(&path).peers().await.unwrap_err();
    assert!(matches!(&error, DiscoveryError::Parse { line: 1, .. }), "{error}");
    assert!(matches!(FileDiscovery::new(dir.join("missing")).peers().await, Err(DiscoveryError::File { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_member_finds_the_cluster_through_a_dns_name() {
    let first = start("m0", None).await;
    let second = start_with("m1", DnsDiscovery::new("localhost", first.addr().port())).await;
    eventually("the member found through DNS joins", LIMIT, || all_see_all(&[&first, &second])).await;
    let error = DnsDiscovery::new("no-such-host.invalid", 1).peers().await.unwrap_err();
    assert!(matches!(error, DiscoveryError::Resolve { .. }), "{error}");
}

#[tokio::test]
async fn a_member_finds_the_cluster_through_dns_srv_records() {
    let first = start("m0", None).await;
    let second = start("m1", Some(first.addr())).await;
    let server = DnsServer::start(vec![first.addr().port(), second.addr().port()]).await;
    let srv = SrvDiscovery::new("_quorate._tcp.test", Some(server.addr));
    let mut found = srv.peers().await.unwrap();
    found.sort();
    let mut expected = vec![first.addr(), second.addr()];
    expected.sort();
    assert_eq!(found, expected, "one address per SRV record, its target resolved");

    let third = start_with("m2", SrvDiscovery::new("_quorate._tcp.test", Some(server.addr))).await;
    eventually("the member found through SRV joins", LIMIT, || all_see_all(&[&first, &second, &third])).await;
}

/// A discovery that counts how often it is asked, failing when told to.
#[derive(Debug, Default)]
struct Counting {
    asked: AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
}

/// A shared [`Counting`], so the test keeps a handle on what the cache owns.
#[derive(Debug, Clone)]
struct Shared(Arc<Counting>);

impl Discovery for Shared {
    fn peers(&self) -> PeersFuture<'_> {
        Box::pin(async move {
            let asked = self.0.asked.fetch_add(1, Ordering::SeqCst);
            if self.0.failing.load(Ordering::SeqCst) {
                return Err(DiscoveryError::Dns { name: "test".into(), message: "down".into() });
            }
            Ok(vec![SocketAddr::from(([10, 0, 0, 1], 7000 + asked as u16))])
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_ttl_cache_asks_at_most_once_per_ttl_and_serves_stale_answers_when_the_source_fails() {
    let source = Arc::new(Counting::default());
    let cached = Cached::new(Shared(source.clone()), Duration::from_secs(30));
    let first = cached.peers().await.unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(cached.peers().await.unwrap(), first, "within the TTL: the cached answer");
    assert_eq!(source.asked.load(Ordering::SeqCst), 1, "asked once within the TTL");

    tokio::time::advance(Duration::from_secs(2)).await;
    let second = cached.peers().await.unwrap();
    assert_ne!(second, first, "past the TTL: asked again");
    assert_eq!(source.asked.load(Ordering::SeqCst), 2);

    source.failing.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(cached.peers().await.unwrap(), second, "a failure past the TTL serves the stale answer");
    assert_eq!(source.asked.load(Ordering::SeqCst), 3);

    let empty = Cached::new(Shared(source.clone()), Duration::from_secs(30));
    assert!(empty.peers().await.is_err(), "with nothing cached, the failure shows");
}

#[tokio::test]
async fn discovery_specs_parse_or_say_what_is_wrong() {
    let found = discovery::parse("static:10.0.0.1:7946, 10.0.0.2:7946").unwrap().peers().await.unwrap();
    assert_eq!(
        found,
        StaticDiscovery::new(["10.0.0.1:7946".parse().unwrap(), "10.0.0.2:7946".parse().unwrap()])
            .peers()
            .await
            .unwrap()
    );
    assert!(discovery::parse("dns:quorate.internal:7946").is_ok());
    assert!(discovery::parse("srv:_quorate._tcp.internal@127.0.0.1:53").is_ok());
    assert!(discovery::parse("file:/etc/quorate/peers").is_ok());
    type Row = (&'static str, fn(&SpecError) -> bool);
    let table: [Row; 6] = [
        ("consul:x", |e| matches!(e, SpecError::UnknownKind(_))),
        ("nothing", |e| matches!(e, SpecError::UnknownKind(_))),
        ("static:10.0.0.1:1,junk", |e| matches!(e, SpecError::Invalid { kind: "static", .. })),
        ("dns:quorate.internal", |e| matches!(e, SpecError::Invalid { kind: "dns", .. })),
        ("srv:_q._tcp@not-an-address", |e| matches!(e, SpecError::Invalid { kind: "srv", .. })),
        ("file:", |e| matches!(e, SpecError::Invalid { kind: "file", .. })),
    ];
    for (index, (spec, expected)) in table.into_iter().enumerate() {
        let error = discovery::parse(spec).unwrap_err();
        assert!(expected(&error), "row {index}: {spec}: {error}");
        assert!(!error.to_string().is_empty());
    }
}

/// Just enough of a DNS server for SRV discovery: it answers every SRV query
/// with one record per port, targeting `member.test.`, and every A query with
/// 127.0.0.1; anything else gets an empty answer.
struct DnsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    async fn start(ports: Vec<u16>) -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buffer).await else { continue };
                if let Some(answer) = answer(&buffer[..len], &ports) {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        DnsServer { addr, task }
    }
}

fn answer(query: &[u8], ports: &[u16]) -> Option<Vec<u8>> {
    const SRV: u16 = 33;
    const A: u16 = 1;
    let header = query.get(..12)?;
    // The question: labels, then type and class.
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + usize::from(query[at]);
    }
    let question_end = at + 5;
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let mut records: Vec<(u16, Vec<u8>)> = Vec::new();
    match qtype {
        SRV => {
            for &port in ports {
                let mut rdata = vec![0, 10, 0, 10];
                rdata.extend_from_slice(&port.to_be_bytes());
                for label in ["member", "test"] {
                    rdata.push(label.len() as u8);
                    rdata.extend_from_slice(label.as_bytes());
                }
                rdata.push(0);
                records.push((SRV, rdata));
            }
        }
        A => records.push((A, Ipv4Addr::LOCALHOST.octets().to_vec())),
        _ => {}
    }
    let mut response = Vec::new();
    response.extend_from_slice(&header[..2]); // id
    response.extend_from_slice(&[0x81, 0x80]); // a response, recursion available, no error
    response.extend_from_slice(&[0, 1]);
    response.extend_from_slice(&(records.len() as u16).to_be_bytes());
    response.extend_from_slice(&[0, 0, 0, 0]);
    response.extend_from_slice(query.get(12..question_end)?);
    for (rtype, rdata) in records {
        response.extend_from_slice(&[0xc0, 12]); // the question's name
        response.extend_from_slice(&rtype.to_be_bytes());
        response.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
        response.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        response.extend_from_slice(&rdata);
    }
    Some(response)
}
