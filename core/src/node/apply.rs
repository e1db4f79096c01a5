//! The node's part in the replicated state machine (DESIGN §3.4): a member's
//! `apply` goes through its [`Client`](crate::rsm::client::Client) to the
//! leader, the leader proposes client entries stamped with log time and
//! answers whoever asked, and every log member applies committed client
//! entries to the state machine, answering its own commands itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{Event, Node};
use crate::raft::{Directory, MAX_PENDING_READS, Payload, Role};
use crate::rsm::client::{Action, CommandBytes, Message, Origin, ResponseBytes};
use crate::rsm::{ApplyError, Outcome};
use crate::teeth::{Plant, planted};
use crate::time::Instant;
use crate::timer::Timer;
use crate::wire::{Body, Channel};

impl Node {
    /// The application's `Command::Apply`.
    pub(super) fn on_apply(&mut self, now: Instant, request: u64, command: Vec<u8>) {
        if self.membership.is_leaving() || !self.coordination.fenced_by.is_nil() {
            self.outbox.event(Event::Applied { request, result: Err(ApplyError::Stopped) });
            return;
        }
        let mut actions = Vec::new();
        self.client.apply(now, request, command, &mut actions);
        self.run_client_actions(now, actions);
    }

    /// The application's `Command::Read`.
    pub(super) fn on_read(&mut self, now: Instant, request: u64, query: Vec<u8>) {
        if self.membership.is_leaving() || !self.coordination.fenced_by.is_nil() {
            self.outbox.event(Event::Read { request, result: Err(ApplyError::Stopped) });
            return;
        }
        if planted(Plant::StaleRead) && self.raft.configuration().contains(self.id()) {
            let result = Ok(self.rsm.query(&query));
            self.outbox.event(Event::Read { request, result });
            return;
        }
        let mut actions = Vec::new();
        self.client.read(now, request, query, &mut actions);
        self.run_client_actions(now, actions);
    }

    /// Carries out what the client asked, and re-arms its timer.
    pub(super) fn run_client_actions(&mut self, now: Instant, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Done(request, result) => self.outbox.event(Event::Applied { request, result }),
                Action::Read(request, result) => self.outbox.event(Event::Read { request, result }),
                Action::ToLeader(Message::Read { nonce, id, query }) if self.raft.role() == Role::Leader => {
                    self.lead_read(now, None, nonce, id, query);
                }
                Action::ToLeader(message) => {
                    if self.raft.role() == Role::Leader {
                        self.lead_client_message(now, None, message);
                    } else if let Some(addr) = self.raft.leader().and_then(|leader| self.membership.addr_of(leader)) {
                        self.outbox.send(addr, Channel::Stream, Body::Client(message));
                    }
                    // No leader known: the retry timer sends it again.
                }
            }
        }
        match self.client.next_deadline() {
            Some(at) => self.timers.set(Timer::ClientRetry, at),
            None => self.timers.cancel(Timer::ClientRetry),
        }
    }

    pub(super) fn on_client_timer(&mut self, now: Instant) {
        let mut actions = Vec::new();
        self.client.on_timer(now, self.raft.leader(), &mut actions);
        self.run_client_actions(now, actions);
    }

    /// A client message from the member at `from` (its advertised address).
    pub(super) fn on_client_message(&mut self, now: Instant, from: Option<SocketAddr>, message: Message) {
        let mut actions = Vec::new();
        match message {
            Message::Register { .. } | Message::Apply { .. } => {
                if self.raft.role() == Role::Leader {
                    self.lead_client_message(now, from, message);
                } else if let Some(addr) = from {
                    let reply = Message::NotLeader { leader: self.raft.leader() };
                    self.outbox.send(addr, Channel::Stream, Body::Client(reply));
                }
            }
            Message::Registered { nonce, session } => self.client.on_registered(now, nonce, session, &mut actions),
            Message::Applied { session, seq, result } => {
                let result = result.map(ResponseBytes::into_vec);
                self.client.on_applied(now, session, seq, result, &mut actions);
            }
            Message::Read { nonce, id, query } => {
                if self.raft.role() == Role::Leader {
                    self.lead_read(now, from, nonce, id, query);
                } else if let Some(addr) = from {
                    let reply = Message::NotLeader { leader: self.raft.leader() };
                    self.outbox.send(addr, Channel::Stream, Body::Client(reply));
                }
            }
            Message::ReadDone { nonce, id, result } => {
                self.client.on_read_done(nonce, id, result.map(ResponseBytes::into_vec), &mut actions);
            }
            Message::NotLeader { .. } => self.client.on_not_leader(now),
        }
        self.run_client_actions(now, actions);
    }

    /// On the leader: takes a member's read (`from`: where to answer;
    /// `None`: this member's own client) and asks Raft to confirm it.
    fn lead_read(&mut self, now: Instant, from: Option<SocketAddr>, nonce: u64, id: u64, query: CommandBytes) {
        let key = self.reads.next_key;
        let accepted = self.reads.waiting.len() < MAX_PENDING_READS && self.raft.read_index(now, key).is_ok();
        if !accepted {
            return self.refuse(now, from);
        }
        self.reads.next_key += 1;
        self.reads.waiting.insert(key, PendingRead { from, nonce, id, query, index: None });
    }

    /// Tells whoever asked that this member does not lead (or cannot take
    /// the request now): it asks again shortly.
    fn refuse(&mut self, now: Instant, to: Option<SocketAddr>) {
        match to {
            Some(addr) => {
                let reply = Message::NotLeader { leader: None };
                self.outbox.send(addr, Channel::Stream, Body::Client(reply));
            }
            None => self.client.on_not_leader(now),
        }
    }

    /// Serves the reads Raft confirmed whose index is applied here.
    pub(super) fn serve_reads(&mut self, now: Instant) {
        for (key, index) in self.raft.take_confirmed_reads() {
            if let Some(read) = self.reads.waiting.get_mut(&key) {
                read.index = Some(index);
            }
        }
        let applied = self.raft.applied_index();
        let ready: Vec<u64> = self
            .reads
            .waiting
            .iter()
            .filter(|(_, read)| read.index.is_some_and(|index| index <= applied))
            .map(|(&key, _)| key)
            .collect();
        let mut actions = Vec::new();
        for key in ready {
            let read = self.reads.waiting.remove(&key).expect("listed");
            let response = self.rsm.query(&read.query);
            match read.from {
                Some(addr) => {
                    let len = response.len();
                    let result = ResponseBytes::try_from_vec(response).map_err(|_| ApplyError::ResponseTooLarge(len));
                    let done = Message::ReadDone { nonce: read.nonce, id: read.id, result };
                    self.outbox.send(addr, Channel::Stream, Body::Client(done));
                }
                None => self.client.on_read_done(read.nonce, read.id, Ok(response), &mut actions),
            }
        }
        if !actions.is_empty() {
            self.run_client_actions(now, actions);
        }
    }

    /// On the leader: proposes a member's registration or command; `from` is
    /// where to answer (`None`: this member's own client).
    fn lead_client_message(&mut self, now: Instant, from: Option<SocketAddr>, message: Message) {
        let (payload, origin) = match message {
            Message::Register { nonce } => {
                let stamp = self.log_time(now);
                (Payload::Register { stamp, nonce }, from.map(|addr| Origin::Register { addr, nonce }))
            }
            Message::Apply { session, seq, confirmed_below, command } => {
                // A resend of a command already applied: answer from the table.
                let answered = self.rsm.table().sessions.get(&session).and_then(|s| s.responses.get(&seq)).cloned();
                if let Some(response) = answered {
                    self.answer_command(now, from, session, seq, Ok(response));
                    return;
                }
                let stamp = self.log_time(now);
                let payload = Payload::Command { session, seq, confirmed_below, stamp, command };
                (payload, from.map(|addr| Origin::Command { addr }))
            }
            _ => return,
        };
        match self.raft.propose(payload) {
            Ok(index) => {
                if let Some(origin) = origin {
                    self.origins.insert(index, origin);
                }
            }
            // Stepping down or handing leadership over: ask again shortly.
            Err(_) => self.refuse(now, from),
        }
    }

    /// Log time for a new client entry: the newest stamp this leader
    /// inherited plus its time since election, never below the last stamp.
    fn log_time(&mut self, now: Instant) -> u64 {
        let (inherited, since) = *self.stamps.base.get_or_insert_with(|| {
            let in_log = self
                .raft
                .entries_from(self.raft.commit_index() + 1)
                .filter_map(|entry| match entry.payload {
                    Payload::Register { stamp, .. } | Payload::Command { stamp, .. } => Some(stamp),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            (in_log.max(self.rsm.stamp()), now)
        });
        let elapsed = u64::try_from(now.saturating_duration_since(since).as_nanos()).unwrap_or(u64::MAX);
        let stamp = inherited.saturating_add(elapsed).max(self.stamps.last);
        self.stamps.last = stamp;
        stamp
    }

    /// Leadership began or ended: a new leader starts its log time afresh
    /// from what it inherits; a former one forgets whom to answer, and its
    /// reads still waiting for a round ask the next leader. Confirmed reads
    /// stay: their index was current while this member led.
    pub(super) fn on_leadership_changed(&mut self, now: Instant) {
        self.stamps.base = None;
        if self.raft.role() == Role::Leader {
            return;
        }
        self.origins.clear();
        let unconfirmed: Vec<u64> =
            self.reads.waiting.iter().filter(|(_, read)| read.index.is_none()).map(|(&key, _)| key).collect();
        for key in unconfirmed {
            let read = self.reads.waiting.remove(&key).expect("listed");
            self.refuse(now, read.from);
        }
    }

    /// Applies one committed client entry at `index`.
    pub(super) fn apply_client_entry(&mut self, now: Instant, index: u64, payload: &Payload) {
        let mut actions = Vec::new();
        match payload {
            &Payload::Register { stamp, nonce } => {
                let Outcome::Registered(session) = self.rsm.register(index, stamp) else { return };
                if let Some(Origin::Register { addr, nonce }) = self.origins.take(index) {
                    self.outbox.send(addr, Channel::Stream, Body::Client(Message::Registered { nonce, session }));
                }
                self.client.on_registered(now, nonce, session, &mut actions);
            }
            Payload::Command { session, seq, confirmed_below, stamp, command } => {
                let result = match self.rsm.command(*session, *seq, *confirmed_below, *stamp, command.as_slice()) {
                    Outcome::Applied(response) => Ok(response),
                    _ => Err(ApplyError::SessionExpired),
                };
                let addr = match self.origins.take(index) {
                    Some(Origin::Command { addr }) => Some(addr),
                    _ => None,
                };
                if let Some(addr) = addr {
                    self.answer_command(now, Some(addr), *session, *seq, result.clone());
                }
                self.client.on_applied(now, *session, *seq, result, &mut actions);
            }
            _ => return,
        }
        self.run_client_actions(now, actions);
    }

    /// Answers command `seq` of `session` to the member at `to` (`None`:
    /// this member's own client).
    fn answer_command(
        &mut self,
        now: Instant,
        to: Option<SocketAddr>,
        session: u64,
        seq: u64,
        result: Result<Vec<u8>, ApplyError>,
    ) {
        match to {
            Some(addr) => {
                let result = result.and_then(|response| {
                    let len = response.len();
                    ResponseBytes::try_from_vec(response).map_err(|_| ApplyError::ResponseTooLarge(len))
                });
                self.outbox.send(addr, Channel::Stream, Body::Client(Message::Applied { session, seq, result }));
            }
            None => {
                let mut actions = Vec::new();
                self.client.on_applied(now, session, seq, result, &mut actions);
                self.run_client_actions(now, actions);
            }
        }
    }
}

/// Reads a leader holds (ReadIndex), keyed by the number it gave Raft.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    next_key: u64,
    waiting: BTreeMap<u64, PendingRead>,
}

#[derive(Debug)]
struct PendingRead {
    /// Where to answer; `None`: this member's own client.
    from: Option<SocketAddr>,
    nonce: u64,
    id: u64,
    query: CommandBytes,
    /// Set once Raft confirmed it: the index to have applied first.
    index: Option<u64>,
}

/// What a leader knows of log time (DESIGN §3.4).
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    /// The stamp inherited at election and when, once this leader stamped.
    pub(crate) base: Option<(u64, Instant)>,
    /// The last stamp given.
    pub(crate) last: u64,
}
