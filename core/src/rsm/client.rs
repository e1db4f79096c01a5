//! A member's side of `apply` (DESIGN §3.4): its session, its numbered
//! commands in flight, forwarding to the leader, retries and timeouts; and
//! the leader's side: whom to answer when a forwarded entry applies.
//!
//! Every member registers one session per boot, lazily, on its first
//! `apply`. A command is sent to the leader (or proposed, on the leader) and
//! resent with the same sequence number until an answer comes or the apply
//! timeout passes; the session table makes a resend apply at most once. A
//! member that holds the log answers its own commands when it applies them;
//! any other hears from the leader. Nothing here trusts a message to arrive.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::ApplyError;
use crate::id::MemberId;
use crate::time::Instant;
use crate::wire::{BoundedVec, limits};

/// A command as it travels and sits in the log.
pub type CommandBytes = BoundedVec<u8, { limits::MAX_COMMAND_BYTES }>;
/// A response as it travels.
pub type ResponseBytes = BoundedVec<u8, { limits::MAX_RESPONSE_BYTES }>;

/// Client messages between a member and the leader (on streams).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// To the leader: register a session; `nonce` pairs the answer.
    Register {
        /// The member's registration nonce.
        nonce: u64,
    },
    /// From the leader: the session is registered.
    Registered {
        /// The nonce of the request.
        nonce: u64,
        /// The session's id.
        session: u64,
    },
    /// To the leader: apply a command once.
    Apply {
        /// The session.
        session: u64,
        /// The command's number in its session.
        seq: u64,
        /// Every number below this was answered.
        confirmed_below: u64,
        /// The command.
        command: CommandBytes,
    },
    /// From the leader: a command's outcome.
    Applied {
        /// The session.
        session: u64,
        /// The command's number.
        seq: u64,
        /// Its response, or why there is none.
        result: Result<ResponseBytes, ApplyError>,
    },
    /// To the leader: answer a read-only query once the state is current
    /// (ReadIndex). Reads change nothing, so a resend is harmless.
    Read {
        /// The asking member's boot nonce: an answer to a read of an earlier
        /// boot must not answer this one's.
        nonce: u64,
        /// The member's request number.
        id: u64,
        /// The query.
        query: CommandBytes,
    },
    /// From the leader: a read's answer.
    ReadDone {
        /// The asking member's nonce.
        nonce: u64,
        /// Its request number.
        id: u64,
        /// The answer, or why there is none.
        result: Result<ResponseBytes, ApplyError>,
    },
    /// From a member that does not lead: who does, as far as it knows.
    NotLeader {
        /// Its leader, if it knows one.
        leader: Option<MemberId>,
    },
}

impl Message {
    /// A short, stable name of the message kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Register { .. } => "client_register",
            Message::Registered { .. } => "client_registered",
            Message::Apply { .. } => "client_apply",
            Message::Applied { .. } => "client_applied",
            Message::Read { .. } => "client_read",
            Message::ReadDone { .. } => "client_read_done",
            Message::NotLeader { .. } => "client_not_leader",
        }
    }
}

/// What the member's client asks its node to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send this to the leader (or, when this member leads, propose it).
    ToLeader(Message),
    /// Tell the application: request `request` ended with `result`.
    Done(u64, Result<Vec<u8>, ApplyError>),
    /// Tell the application: read `request` ended with `result`.
    Read(u64, Result<Vec<u8>, ApplyError>),
}

#[derive(Clone, Debug)]
struct InFlight {
    request: u64,
    command: CommandBytes,
    since: Instant,
    sent: Option<Instant>,
    /// Not resent before this (after a `NotLeader`).
    not_before: Instant,
}

/// The member's side. See the module doc.
#[derive(Debug)]
pub(crate) struct Client {
    session: Option<u64>,
    nonce: u64,
    registering_since: Option<Instant>,
    register_sent: Option<Instant>,
    register_not_before: Instant,
    next_seq: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Reads in flight, by request.
    reads: BTreeMap<u64, InFlight>,
    /// Requests waiting for the session: (request, command, since).
    waiting: VecDeque<(u64, CommandBytes, Instant)>,
    /// Resend an unanswered message after this long.
    retry: core::time::Duration,
    /// Fail a request after this long.
    timeout: core::time::Duration,
    /// Sessions idle this long (in log time) expire at the leader.
    session_ttl: core::time::Duration,
    /// When this member's session last had an answer.
    last_answer: Instant,
}

impl Client {
    pub(crate) fn new(
        nonce: u64,
        retry: core::time::Duration,
        timeout: core::time::Duration,
        session_ttl: core::time::Duration,
    ) -> Self {
        Client {
            session: None,
            nonce,
            registering_since: None,
            register_sent: None,
            register_not_before: Instant::ZERO,
            next_seq: 1,
            in_flight: BTreeMap::new(),
            reads: BTreeMap::new(),
            waiting: VecDeque::new(),
            retry,
            timeout,
            session_ttl,
            last_answer: Instant::ZERO,
        }
    }

    /// Whether anything is waiting for an answer.
    #[cfg(test)]
    fn is_busy(&self) -> bool {
        !self.in_flight.is_empty() || !self.waiting.is_empty()
    }

    fn confirmed_below(&self) -> u64 {
        self.in_flight.keys().next().copied().unwrap_or(self.next_seq)
    }

    /// The application asks to apply `command` as request `request`.
    pub(crate) fn apply(&mut self, now: Instant, request: u64, command: Vec<u8>, out: &mut Vec<Action>) {
        let len = command.len();
        let Ok(command) = CommandBytes::try_from_vec(command) else {
            out.push(Action::Done(request, Err(ApplyError::TooLarge(len))));
            return;
        };
        // A session idle for half its lifetime may be near expiry: with
        // nothing in flight, a fresh one costs one round and no error.
        if self.session.is_some() && self.in_flight.is_empty() && now >= self.last_answer + self.session_ttl / 2 {
            self.session = None;
        }
        match self.session {
            Some(session) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.in_flight.insert(seq, InFlight { request, command, since: now, sent: None, not_before: now });
                self.send(now, session, seq, out);
            }
            None => {
                self.waiting.push_back((request, command, now));
                if self.registering_since.is_none() {
                    self.registering_since = Some(now);
                    self.register(now, out);
                }
            }
        }
    }

    /// The application asks to read with `query` as request `request`.
    pub(crate) fn read(&mut self, now: Instant, request: u64, query: Vec<u8>, out: &mut Vec<Action>) {
        let len = query.len();
        let Ok(command) = CommandBytes::try_from_vec(query) else {
            out.push(Action::Read(request, Err(ApplyError::TooLarge(len))));
            return;
        };
        self.reads.insert(request, InFlight { request, command, since: now, sent: None, not_before: now });
        self.send_read(now, request, out);
    }

    fn send_read(&mut self, now: Instant, request: u64, out: &mut Vec<Action>) {
        let Some(read) = self.reads.get_mut(&request) else { return };
        read.sent = Some(now);
        out.push(Action::ToLeader(Message::Read { nonce: self.nonce, id: request, query: read.command.clone() }));
    }

    /// A read has its answer.
    pub(crate) fn on_read_done(
        &mut self,
        nonce: u64,
        id: u64,
        result: Result<Vec<u8>, ApplyError>,
        out: &mut Vec<Action>,
    ) {
        if nonce != self.nonce {
            return;
        }
        if let Some(read) = self.reads.remove(&id) {
            out.push(Action::Read(read.request, result));
        }
    }

    fn register(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.register_sent = Some(now);
        out.push(Action::ToLeader(Message::Register { nonce: self.nonce }));
    }

    fn send(&mut self, now: Instant, session: u64, seq: u64, out: &mut Vec<Action>) {
        let confirmed_below = self.confirmed_below();
        let Some(in_flight) = self.in_flight.get_mut(&seq) else { return };
        in_flight.sent = Some(now);
        out.push(Action::ToLeader(Message::Apply {
            session,
            seq,
            confirmed_below,
            command: in_flight.command.clone(),
        }));
    }

    /// The session registered (learned from the leader or from the log).
    pub(crate) fn on_registered(&mut self, now: Instant, nonce: u64, session: u64, out: &mut Vec<Action>) {
        if nonce != self.nonce || self.session.is_some() || self.registering_since.is_none() {
            return;
        }
        self.session = Some(session);
        self.last_answer = now;
        self.registering_since = None;
        self.register_sent = None;
        while let Some((request, command, since)) = self.waiting.pop_front() {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.in_flight.insert(seq, InFlight { request, command, since, sent: None, not_before: now });
            self.send(now, session, seq, out);
        }
    }

    /// Command `seq` of `session` has an outcome.
    pub(crate) fn on_applied(
        &mut self,
        now: Instant,
        session: u64,
        seq: u64,
        result: Result<Vec<u8>, ApplyError>,
        out: &mut Vec<Action>,
    ) {
        if self.session != Some(session) {
            return;
        }
        let Some(in_flight) = self.in_flight.remove(&seq) else { return };
        self.last_answer = now;
        if result == Err(ApplyError::SessionExpired) {
            // The session is gone: the next commands register a new one;
            // those in flight were never applied under it and go with it.
            self.session = None;
            out.push(Action::Done(in_flight.request, result));
            let in_flight = std::mem::take(&mut self.in_flight);
            for (_, lost) in in_flight {
                out.push(Action::Done(lost.request, Err(ApplyError::SessionExpired)));
            }
            if !self.waiting.is_empty() {
                self.registering_since = Some(now);
                self.register(now, out);
            }
            return;
        }
        out.push(Action::Done(in_flight.request, result));
    }

    /// The member it asked does not lead: resend after a quarter of the
    /// retry interval (a leader is elected meanwhile), to whoever leads then.
    pub(crate) fn on_not_leader(&mut self, now: Instant) {
        let soon = now + self.retry / 4;
        for in_flight in self.in_flight.values_mut().chain(self.reads.values_mut()) {
            in_flight.sent = None;
            in_flight.not_before = soon;
        }
        if self.register_sent.is_some() {
            self.register_sent = None;
            self.register_not_before = soon;
        }
    }

    /// Resends what is due and fails what timed out. Returns when to look
    /// again, if anything is waiting.
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        leader: Option<MemberId>,
        out: &mut Vec<Action>,
    ) -> Option<Instant> {
        let (expired, due) = due_and_expired(&self.in_flight, now, self.retry, self.timeout);
        for seq in expired {
            let in_flight = self.in_flight.remove(&seq).expect("listed");
            out.push(Action::Done(in_flight.request, Err(ApplyError::Timeout { leader })));
        }
        if let Some(session) = self.session {
            for seq in due {
                self.send(now, session, seq, out);
            }
        }
        let (expired, due) = due_and_expired(&self.reads, now, self.retry, self.timeout);
        for request in expired {
            self.reads.remove(&request);
            out.push(Action::Read(request, Err(ApplyError::Timeout { leader })));
        }
        for request in due {
            self.send_read(now, request, out);
        }
        let timed_out = |since: Instant| now >= since + self.timeout;
        while self.waiting.front().is_some_and(|(_, _, since)| timed_out(*since)) {
            let (request, _, _) = self.waiting.pop_front().expect("checked");
            out.push(Action::Done(request, Err(ApplyError::Timeout { leader })));
        }
        if self.waiting.is_empty() {
            self.registering_since = None;
            self.register_sent = None;
        } else if now >= self.register_not_before && self.register_sent.is_none_or(|sent| now >= sent + self.retry) {
            self.register(now, out);
        }
        self.next_deadline()
    }

    /// The next time [`Client::on_timer`] has work.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let in_flight = self.in_flight.values().chain(self.reads.values()).map(|f| {
            let resend = f.sent.map_or(f.not_before, |sent| (sent + self.retry).max(f.not_before));
            resend.min(f.since + self.timeout)
        });
        let waiting = self.waiting.front().map(|(_, _, since)| {
            let resend = self.register_sent.map_or(self.register_not_before, |sent| sent + self.retry);
            resend.max(*since).min(*since + self.timeout)
        });
        in_flight.chain(waiting).min()
    }
}

/// Of the requests in `map`, those past the timeout and (the others) those
/// due to be resent.
fn due_and_expired(
    map: &BTreeMap<u64, InFlight>,
    now: Instant,
    retry: core::time::Duration,
    timeout: core::time::Duration,
) -> (Vec<u64>, Vec<u64>) {
    let (expired, live): (Vec<_>, Vec<_>) = map.iter().partition(|(_, f)| now >= f.since + timeout);
    let due = live.into_iter().filter(|(_, f)| now >= f.not_before && f.sent.is_none_or(|sent| now >= sent + retry));
    (expired.into_iter().map(|(&key, _)| key).collect(), due.map(|(&key, _)| key).collect())
}

/// Whom the leader answers when an entry it proposed for a member applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A registration asked by the member at `addr`.
    Register {
        /// Where to answer.
        addr: SocketAddr,
        /// The member's nonce.
        nonce: u64,
    },
    /// A command of a member at `addr`.
    Command {
        /// Where to answer.
        addr: SocketAddr,
    },
}

/// Entries proposed for other members, by log index; bounded.
#[derive(Debug, Default)]
pub(crate) struct Origins(BTreeMap<u64, Origin>);

/// Most answers the leader keeps to send.
const MAX_ORIGINS: usize = 65_536;

impl Origins {
    pub(crate) fn insert(&mut self, index: u64, origin: Origin) {
        if self.0.len() >= MAX_ORIGINS {
            // The oldest member will resend and be answered from the table.
            self.0.pop_first();
        }
        self.0.insert(index, origin);
    }

    pub(crate) fn take(&mut self, index: u64) -> Option<Origin> {
        self.0.remove(&index)
    }

    /// Leadership ended: whoever asked resends to the next leader.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;

    fn at(millis: u64) -> Instant {
        Instant::from_nanos(millis * 1_000_000)
    }

    fn client() -> Client {
        Client::new(42, Duration::from_millis(100), Duration::from_secs(1), Duration::from_secs(60))
    }

    #[test]
    fn the_first_apply_registers_then_sends_numbered_commands() {
        let mut client = client();
        let mut out = Vec::new();
        client.apply(at(0), 1, b"a".to_vec(), &mut out);
        client.apply(at(1), 2, b"b".to_vec(), &mut out);
        assert_eq!(out, [Action::ToLeader(Message::Register { nonce: 42 })], "one registration for both");
        out.clear();
        client.on_registered(at(5), 42, 9, &mut out);
        let seqs: Vec<(u64, u64)> = out
            .iter()
            .map(|action| match action {
                Action::ToLeader(Message::Apply { seq, confirmed_below, .. }) => (*seq, *confirmed_below),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, [(1, 1), (2, 1)]);
        out.clear();
        client.on_applied(at(6), 9, 1, Ok(b"A".to_vec()), &mut out);
        client.on_applied(at(6), 9, 1, Ok(b"A".to_vec()), &mut out);
        assert_eq!(out, [Action::Done(1, Ok(b"A".to_vec()))], "answered once");
    }

    #[test]
    fn unanswered_commands_are_resent_with_their_number_then_time_out() {
        let mut client = client();
        let mut out = Vec::new();
        client.apply(at(0), 1, b"a".to_vec(), &mut out);
        client.on_registered(at(0), 42, 9, &mut out);
        out.clear();
        assert_eq!(client.next_deadline(), Some(at(100)));
        client.on_timer(at(100), None, &mut out);
        assert!(matches!(out.as_slice(), [Action::ToLeader(Message::Apply { seq: 1, .. })]), "{out:?}");
        out.clear();
        client.on_timer(at(1000), Some(MemberId::from_u128(3)), &mut out);
        assert_eq!(out, [Action::Done(1, Err(ApplyError::Timeout { leader: Some(MemberId::from_u128(3)) }))]);
        assert!(!client.is_busy());
    }

    #[test]
    fn an_expired_session_fails_its_commands_and_the_next_one_registers_again() {
        let mut client = client();
        let mut out = Vec::new();
        client.apply(at(0), 1, b"a".to_vec(), &mut out);
        client.on_registered(at(0), 42, 9, &mut out);
        client.apply(at(1), 2, b"b".to_vec(), &mut out);
        out.clear();
        client.on_applied(at(2), 9, 1, Err(ApplyError::SessionExpired), &mut out);
        assert_eq!(
            out,
            [Action::Done(1, Err(ApplyError::SessionExpired)), Action::Done(2, Err(ApplyError::SessionExpired))]
        );
        out.clear();
        client.apply(at(3), 3, b"c".to_vec(), &mut out);
        assert_eq!(out, [Action::ToLeader(Message::Register { nonce: 42 })]);
    }

    #[test]
    fn a_command_over_the_limit_is_refused_at_once() {
        let mut out = Vec::new();
        client().apply(at(0), 7, vec![0; limits::MAX_COMMAND_BYTES + 1], &mut out);
        assert_eq!(out, [Action::Done(7, Err(ApplyError::TooLarge(limits::MAX_COMMAND_BYTES + 1)))]);
    }
}
