//! Sockets: one UDP socket for membership datagrams, TCP for stream frames.
//!
//! Both listen on the same address. Outbound frames go through one writer
//! task per destination, fed by a bounded queue: when the queue is full the
//! new frame is dropped and counted (the protocol above retries what
//! matters), and a destination that refused a connection is not tried again
//! until its backoff passes, so a dead member costs no connect storm. Inbound
//! connections are bounded in number; each has a reader task that hands whole
//! frames to the driver through a bounded channel, so a slow driver slows the
//! senders down through TCP's own flow control instead of buffering without
//! bound.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quorate_core::Channel;
use quorate_core::wire::limits;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::framing::{read_frame, write_frame};

/// Frames queued for one destination; past this, new frames are dropped.
const FRAMES_PER_PEER: usize = 256;
/// Inbound messages (datagrams and frames) waiting for the driver. A full
/// queue drops datagrams and holds back stream readers.
const INBOUND_QUEUE: usize = 4096;
/// Inbound TCP connections open at once; further ones are closed at accept.
const MAX_INBOUND_CONNECTIONS: usize = 1024;
/// A writer whose destination has been silent this long closes its connection.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Larger than any datagram we accept, so an oversized one arrives whole and
/// the core refuses and counts it instead of seeing a truncated prefix.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// A datagram or whole frame that arrived.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) from: SocketAddr,
    pub(crate) channel: Channel,
    pub(crate) bytes: Vec<u8>,
}

/// What the transport dropped, for metrics.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Datagrams received while the driver's queue was full.
    pub datagrams_dropped: AtomicU64,
    /// Datagrams the socket refused to send.
    pub datagram_send_errors: AtomicU64,
    /// Frames dropped: queue full, destination unreachable or connection lost.
    pub frames_dropped: AtomicU64,
    /// Inbound frames refused as malformed or oversized (their connection is closed).
    pub frames_refused: AtomicU64,
    /// Inbound connections closed at accept because too many were open.
    pub connections_refused: AtomicU64,
}

/// The sockets of one member, and the tasks that serve them. Dropping it
/// stops every task and closes every socket.
pub(crate) struct Transport {
    udp: Arc<UdpSocket>,
    local_addr: SocketAddr,
    peers: BTreeMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    counters: Arc<TransportCounters>,
    /// Dropped with the transport: every reader task sees it close and exits.
    _alive: watch::Sender<()>,
    alive: watch::Receiver<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Transport {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Transport {
    /// Binds UDP and TCP on `addr` (port 0 picks one port free for both) and
    /// starts receiving. Returns the transport and the channel of what arrives.
    pub(crate) async fn bind(
        addr: SocketAddr,
        #[cfg(madsim)] faults: crate::sim::DatagramFaults,
    ) -> io::Result<(Transport, mpsc::Receiver<Inbound>)> {
        let (listener, udp) = bind_both(addr).await?;
        let local_addr = listener.local_addr()?;
        let udp = Arc::new(udp);
        let counters = Arc::new(TransportCounters::default());
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (alive_tx, alive) = watch::channel(());
        #[cfg(madsim)]
        let receive = receive_datagrams(udp.clone(), inbound_tx.clone(), counters.clone(), faults);
        #[cfg(not(madsim))]
        let receive = receive_datagrams(udp.clone(), inbound_tx.clone(), counters.clone());
        let tasks = vec![
            tokio::spawn(receive),
            tokio::spawn(accept_streams(listener, inbound_tx, counters.clone(), alive.clone())),
        ];
        let transport = Transport { udp, local_addr, peers: BTreeMap::new(), counters, _alive: alive_tx, alive, tasks };
        Ok((transport, inbound_rx))
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn counters(&self) -> Arc<TransportCounters> {
        self.counters.clone()
    }

    pub(crate) async fn send_datagram(&self, to: SocketAddr, bytes: &[u8]) {
        let sent = if crate::buggify!() {
            Err(io::Error::new(io::ErrorKind::WouldBlock, "buggify: send buffer full"))
        } else {
            send_to(&self.udp, bytes, to).await
        };
        if let Err(error) = sent {
            self.counters.datagram_send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%to, %error, "datagram not sent");
        }
    }

    /// Queues a frame for `to`, starting its writer if needed. Never waits.
    pub(crate) fn send_frame(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        let sender = self.peers.get(&to).filter(|sender| !sender.is_closed());
        let sender = match sender {
            Some(sender) => sender.clone(),
            None => {
                // Forget writers that closed (idle or failed) before adding one.
                self.peers.retain(|_, sender| !sender.is_closed());
                let (sender, frames) = mpsc::channel(FRAMES_PER_PEER);
                let counters = self.counters.clone();
                self.tasks.retain(|task| !task.is_finished());
                self.tasks.push(tokio::spawn(write_frames(to, frames, counters, self.alive.clone())));
                self.peers.insert(to, sender.clone());
                sender
            }
        };
        if sender.try_send(bytes).is_err() {
            self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%to, "frame dropped: the destination's queue is full");
        }
    }
}

async fn bind_both(addr: SocketAddr) -> io::Result<(TcpListener, UdpSocket)> {
    // With port 0 the OS picks the TCP port, which may be taken for UDP: try again.
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let listener = TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        match UdpSocket::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(udp) => return Ok((listener, udp)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.expect("at least one attempt"))
}

/// tokio takes `(buf, addr)` and returns the bytes sent; madsim takes
/// `(addr, buf)` and returns nothing.
#[cfg(not(madsim))]
async fn send_to(udp: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    udp.send_to(bytes, to).await.map(drop)
}

#[cfg(madsim)]
async fn send_to(udp: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    udp.send_to(to, bytes).await
}

async fn receive_datagrams(
    udp: Arc<UdpSocket>,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<TransportCounters>,
    #[cfg(madsim)] faults: crate::sim::DatagramFaults,
) {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    #[cfg(madsim)]
    let mut mangler = crate::sim::Mangler::new(faults);
    loop {
        match udp.recv_from(&mut buffer).await {
            Ok((len, from)) => {
                #[cfg(madsim)]
                let datagrams = mangler.mangle(buffer[..len].to_vec());
                #[cfg(not(madsim))]
                let datagrams = [buffer[..len].to_vec()];
                for bytes in datagrams {
                    let datagram = Inbound { from, channel: Channel::Datagram, bytes };
                    let queued = if crate::buggify!() {
                        Err(mpsc::error::TrySendError::Full(datagram))
                    } else {
                        inbound.try_send(datagram)
                    };
                    if let Err(error) = queued {
                        if matches!(error, mpsc::error::TrySendError::Closed(_)) {
                            return;
                        }
                        counters.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // Linux reports an ICMP "port unreachable" for an earlier send as an
            // error on a later receive; it says nothing about this socket.
            Err(error) => tracing::trace!(%error, "datagram receive error"),
        }
    }
}

async fn accept_streams(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<TransportCounters>,
    alive: watch::Receiver<()>,
) {
    let open = Arc::new(Semaphore::new(MAX_INBOUND_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, limit = MAX_INBOUND_CONNECTIONS, "too many inbound connections; closing");
            continue;
        };
        let (inbound, counters, mut alive) = (inbound.clone(), counters.clone(), alive.clone());
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                biased;
                _ = alive.changed() => {}
                () = read_frames(stream, peer, inbound, counters) => {}
            }
        });
    }
}

async fn read_frames(
    mut stream: TcpStream,
    peer: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<TransportCounters>,
) {
    loop {
        match read_frame(&mut stream, limits::MAX_FRAME_BYTES).await {
            // A reset: the frame and the connection are lost; the writer reconnects.
            Ok(Some(_)) if crate::buggify!() => return,
            Ok(Some(bytes)) => {
                if inbound.send(Inbound { from: peer, channel: Channel::Stream, bytes }).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                counters.frames_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, %error, "closing stream");
                return;
            }
        }
    }
}

async fn write_frames(
    to: SocketAddr,
    mut frames: mpsc::Receiver<Vec<u8>>,
    counters: Arc<TransportCounters>,
    mut alive: watch::Receiver<()>,
) {
    let mut stream: Option<TcpStream> = None;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = RECONNECT_BACKOFF_INITIAL;
    loop {
        let frame = tokio::select! {
            biased;
            _ = alive.changed() => return,
            frame = timeout(IDLE_CONNECTION, frames.recv()) => match frame {
                Ok(Some(frame)) => frame,
                // The transport is gone, or the destination was idle: close.
                Ok(None) | Err(_) => return,
            },
        };
        if stream.is_none() {
            if retry_at.is_some_and(|at| Instant::now() < at) {
                counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
                Ok(Ok(connected)) => {
                    // Probes and votes are small and latency-bound.
                    let _ = connected.set_nodelay(true);
                    stream = Some(connected);
                    retry_at = None;
                    backoff = RECONNECT_BACKOFF_INITIAL;
                }
                failed => {
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::debug!(%to, %error, ?backoff, "connect failed");
                    counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    continue;
                }
            }
        }
        let connection = stream.as_mut().expect("connected above");
        let written = if crate::buggify!() {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "buggify: connection reset"))
        } else {
            write_frame(connection, &frame).await
        };
        if let Err(error) = written {
            tracing::debug!(%to, %error, "stream write failed; reconnecting on the next frame");
            counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
            stream = None;
        }
    }
}
