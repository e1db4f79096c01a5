//! Where to find other members (DESIGN §3.1, §4).
//!
//! A [`Discovery`] answers "which addresses might members listen on?". The
//! member polls it every `refresh_interval` and hands the answer to the core
//! as seeds; unreachable ones are retried with per-address backoff there.
//! Shipped: a static list, DNS A/AAAA names, DNS SRV records, and a file of
//! addresses (re-read on every poll, so a config-management tool can rewrite
//! it). [`Cached`] wraps any of them with a TTL, and is just as useful on its
//! own, to list a cluster's nodes without joining it.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use quorate_core::wire::limits;
use tokio::sync::Mutex;

use crate::blocking::run_blocking;
use tokio::time::Instant;

/// The future [`Discovery::peers`] returns.
pub type PeersFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, DiscoveryError>> + Send + 'a>>;

/// A source of candidate member addresses.
pub trait Discovery: Send + Sync + fmt::Debug + 'static {
    /// The addresses members may currently listen on (at most
    /// [`limits::MAX_SEEDS`] are used).
    fn peers(&self) -> PeersFuture<'_>;
}

/// Why discovery found nothing this time. The member keeps its previous
/// seeds and tries again at the next refresh.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A name did not resolve.
    #[error("cannot resolve {name}: {source}")]
    Resolve {
        /// The name.
        name: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// A DNS query failed.
    #[error("DNS lookup of {name} failed: {message}")]
    Dns {
        /// The name queried.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The address file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A line of the address file is not `host:port`.
    #[error("{path}:{line}: expected host:port, found {text:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The offending text.
        text: String,
    },
}

/// Why a discovery spec (`--discovery`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Not one of the known kinds.
    #[error(
        "unknown discovery {0:?}: expected static:ADDR[,ADDR...], dns:HOST:PORT, srv:NAME[@DNS-SERVER:PORT] or file:PATH"
    )]
    UnknownKind(String),
    /// The kind is known, its argument is not.
    #[error("invalid {kind} discovery {value:?}: {reason}")]
    Invalid {
        /// The kind.
        kind: &'static str,
        /// Its argument.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// Builds a discovery from a spec like `static:10.0.0.1:7946,10.0.0.2:7946`,
/// `dns:quorate.internal:7946`, `srv:_quorate._tcp.internal` (optionally
/// `@IP:PORT` of the DNS server to ask) or `file:/etc/quorate/peers`.
pub fn parse(spec: &str) -> Result<Box<dyn Discovery>, SpecError> {
    let (kind, value) = spec.split_once(':').ok_or_else(|| SpecError::UnknownKind(spec.to_owned()))?;
    let invalid = |kind, reason: &str| SpecError::Invalid { kind, value: value.to_owned(), reason: reason.to_owned() };
    match kind {
        "static" => {
            let addrs: Result<Vec<SocketAddr>, _> = value.split(',').map(|addr| addr.trim().parse()).collect();
            let addrs = addrs.map_err(|_| invalid("static", "expected comma-separated IP:PORT addresses"))?;
            Ok(Box::new(StaticDiscovery::new(addrs)))
        }
        "dns" => {
            let (host, port) = value.rsplit_once(':').ok_or_else(|| invalid("dns", "expected HOST:PORT"))?;
            let port = port.parse().map_err(|_| invalid("dns", "the port is not a number"))?;
            if host.is_empty() {
                return Err(invalid("dns", "empty host"));
            }
            Ok(Box::new(DnsDiscovery::new(host, port)))
        }
        #[cfg(not(madsim))]
        "srv" => {
            let (name, server) = match value.split_once('@') {
                Some((name, server)) => {
                    let server = server.parse().map_err(|_| invalid("srv", "the DNS server must be IP:PORT"))?;
                    (name, Some(server))
                }
                None => (value, None),
            };
            if name.is_empty() {
                return Err(invalid("srv", "empty name"));
            }
            Ok(Box::new(SrvDiscovery::new(name, server)))
        }
        "file" => {
            if value.is_empty() {
                return Err(invalid("file", "empty path"));
            }
            Ok(Box::new(FileDiscovery::new(value)))
        }
        _ => Err(SpecError::UnknownKind(spec.to_owned())),
    }
}

/// A fixed list of addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticDiscovery {
    addrs: Vec<SocketAddr>,
}

impl StaticDiscovery {
    /// These addresses, always.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        StaticDiscovery { addrs: addrs.into_iter().collect() }
    }
}

impl Discovery for StaticDiscovery {
    fn peers(&self) -> PeersFuture<'_> {
        Box::pin(async move { Ok(self.addrs.clone()) })
    }
}

/// Every A and AAAA record of a name, at one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsDiscovery {
    host: String,
    port: u16,
}

impl DnsDiscovery {
    /// The addresses `host` resolves to, with `port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        DnsDiscovery { host: host.into(), port }
    }
}

impl Discovery for DnsDiscovery {
    fn peers(&self) -> PeersFuture<'_> {
        Box::pin(async move { resolve(&self.host, self.port).await })
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, DiscoveryError> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| DiscoveryError::Resolve { name: format!("{host}:{port}"), source })?;
    Ok(addrs.take(limits::MAX_SEEDS).collect())
}

/// The targets and ports of a DNS SRV record, each target resolved.
#[cfg(not(madsim))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvDiscovery {
    name: String,
    /// The DNS server to ask; the system's resolver configuration if `None`.
    server: Option<SocketAddr>,
}

#[cfg(not(madsim))]
impl SrvDiscovery {
    /// The SRV records of `name` (e.g. `_quorate._tcp.example.com`), asking
    /// `server` or, without one, the system's resolvers.
    pub fn new(name: impl Into<String>, server: Option<SocketAddr>) -> Self {
        SrvDiscovery { name: name.into(), server }
    }

    async fn lookup(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        use hickory_resolver::proto::rr::RData;

        let dns = |message: String| DiscoveryError::Dns { name: self.name.clone(), message };
        let resolver = match self.server {
            Some(server) => {
                let mut connection = ConnectionConfig::udp();
                connection.port = server.port();
                let name_server = NameServerConfig::new(server.ip(), true, vec![connection]);
                let config = ResolverConfig::from_parts(None, Vec::new(), vec![name_server]);
                hickory_resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default()).build()
            }
            None => hickory_resolver::Resolver::builder_tokio().and_then(|builder| builder.build()),
        }
        .map_err(|error| dns(error.to_string()))?;
        let lookup = resolver.srv_lookup(self.name.as_str()).await.map_err(|error| dns(error.to_string()))?;
        let mut addrs = Vec::new();
        for record in lookup.answers() {
            let RData::SRV(srv) = &record.data else { continue };
            let target = srv.target.to_utf8();
            let target = target.trim_end_matches('.');
            let ips = resolver.lookup_ip(target).await.map_err(|error| dns(format!("{target}: {error}")))?;
            addrs.extend(ips.iter().map(|ip| SocketAddr::new(ip, srv.port)));
            if addrs.len() >= limits::MAX_SEEDS {
                break;
            }
        }
        addrs.truncate(limits::MAX_SEEDS);
        Ok(addrs)
    }
}

#[cfg(not(madsim))]
impl Discovery for SrvDiscovery {
    fn peers(&self) -> PeersFuture<'_> {
        Box::pin(self.lookup())
    }
}

/// A file of `host:port` lines (`#` starts a comment), read on every poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDiscovery {
    path: PathBuf,
}

/// Largest address file read; a larger one is an error, not a truncation.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

impl FileDiscovery {
    /// The addresses listed in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileDiscovery { path: path.into() }
    }

    async fn read(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let file_error = |source| DiscoveryError::File { path: self.path.clone(), source };
        let path = self.path.clone();
        // std::fs on the blocking pool: tokio::fs cannot run under madsim.
        let text = run_blocking(move || -> io::Result<String> {
            let len = std::fs::metadata(&path)?.len();
            if len > MAX_FILE_BYTES {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{len} bytes, over {MAX_FILE_BYTES}")));
            }
            std::fs::read_to_string(&path)
        })
        .await
        .map_err(file_error)?;
        let mut addrs = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let parse_error =
                || DiscoveryError::Parse { path: self.path.clone(), line: index + 1, text: entry.to_owned() };
            match entry.parse::<SocketAddr>() {
                Ok(addr) => addrs.push(addr),
                Err(_) => {
                    let (host, port) = entry.rsplit_once(':').ok_or_else(parse_error)?;
                    let port = port.parse().map_err(|_| parse_error())?;
                    addrs.extend(resolve(host, port).await?);
                }
            }
            if addrs.len() >= limits::MAX_SEEDS {
                break;
            }
        }
        addrs.truncate(limits::MAX_SEEDS);
        Ok(addrs)
    }
}

impl Discovery for FileDiscovery {
    fn peers(&self) -> PeersFuture<'_> {
        Box::pin(self.read())
    }
}

/// Any discovery, asked at most once per `ttl`. Within the TTL the previous
/// answer is served; past it the inner discovery is asked again, and if it
/// fails the previous answer is served (stale beats nothing) with a warning.
#[derive(Debug)]
pub struct Cached<D> {
    inner: D,
    ttl: Duration,
    cache: Mutex<Option<(Instant, Vec<SocketAddr>)>>,
}

impl<D: Discovery> Cached<D> {
    /// `inner`, asked at most once per `ttl`.
    pub fn new(inner: D, ttl: Duration) -> Self {
        Cached { inner, ttl, cache: Mutex::new(None) }
    }

    async fn lookup(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, addrs)) = cache.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(addrs.clone());
        }
        match self.inner.peers().await {
            Ok(addrs) => {
                *cache = Some((Instant::now(), addrs.clone()));
                Ok(addrs)
            }
            Err(error) => match cache.as_ref() {
                Some((_, stale)) => {
                    tracing::warn!(%error, "discovery failed; serving the previous answer");
                    Ok(stale.clone())
                }
                None => Err(error),
            },
        }
    }
}

impl<D: Discovery> Discovery for Cached<D> {
    fn peers(&self) -> PeersFuture<'_> {
        Box::pin(self.lookup())
    }
}

impl Discovery for Box<dyn Discovery> {
    fn peers(&self) -> PeersFuture<'_> {
        (**self).peers()
    }
}
