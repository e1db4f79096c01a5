//! Helpers for the multi-process tests: `quorate agent` processes that are
//! always killed, free ports, a temp dir per test, `/v1/status` polling with
//! a deadline, and a read-only reader of the file store's `quorate.wal`.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quorate_core::{ClusterUuid, MemberId, PersistState, Recovered};
use serde::Deserialize;

/// How long any cluster-wide condition may take. The fast profile settles
/// in about a second; the margin is for debug builds on busy shared cores.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// How long a process may take to exit after it was told to.
pub const EXIT_LIMIT: Duration = Duration::from_secs(20);
/// How often conditions are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Lines of each agent's log printed when a test fails.
const LOG_TAIL_LINES: usize = 30;

/// A small deterministic generator (splitmix64) for test choices.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `range`.
    pub fn below(&mut self, range: Range<u64>) -> u64 {
        assert!(range.start < range.end, "empty range");
        range.start + self.next_u64() % (range.end - range.start)
    }
}

fn clock_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// `n` ports free for TCP and UDP on 127.0.0.1, never handed out twice in this
/// process.
///
/// Chosen below the kernel's ephemeral range (32768+ on Linux), not by
/// binding port 0: an agent killed with `kill -9` is restarted on its old
/// port, and a port from the ephemeral range could meanwhile have become the
/// local end of another agent's outgoing TCP connection.
pub fn free_ports(n: usize) -> Vec<u16> {
    static TAKEN: OnceLock<Mutex<(HashSet<u16>, SplitMix)>> = OnceLock::new();
    let taken = TAKEN.get_or_init(|| Mutex::new((HashSet::new(), SplitMix::new(clock_seed()))));
    let mut taken = taken.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut ports = Vec::with_capacity(n);
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        assert!(attempts < 10_000, "cannot find {n} free ports");
        let port = taken.1.below(20_000..32_000) as u16;
        if taken.0.contains(&port) {
            continue;
        }
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            taken.0.insert(port);
            ports.push(port);
        }
    }
    ports
}

/// A directory of its own for one test, removed when the test passes and
/// kept (its path printed) when it fails.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(test: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("quorate-agents-{test}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).expect("create the test dir");
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// How an agent bootstraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Only joins.
    No,
    /// `--bootstrap-expect N`.
    Expect(u32),
    /// `--bootstrap`.
    Alone,
}

/// One `quorate agent`, which may be started, killed and started again. The
/// process is killed and reaped when this is dropped, on every path.
pub struct Agent {
    pub name: String,
    pub cluster: String,
    pub bind: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub join: Vec<SocketAddr>,
    pub bootstrap: Bootstrap,
    /// Tags, as `KEY=VALUE`.
    pub tags: Vec<String>,
    logs: PathBuf,
    /// How many times it was started: names each run's log file.
    runs: u32,
    child: Option<Child>,
}

impl Agent {
    /// An agent named `name` with fresh ports and a data dir under `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let ports = free_ports(2);
        let logs = dir.join("logs");
        fs::create_dir_all(&logs).expect("create the log dir");
        Agent {
            name: name.to_owned(),
            cluster: "quorate-test".to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            http: SocketAddr::from(([127, 0, 0, 1], ports[1])),
            data_dir: dir.join(format!("{name}.data")),
            join: Vec::new(),
            bootstrap: Bootstrap::No,
            tags: Vec::new(),
            logs,
            runs: 0,
            child: None,
        }
    }

    /// The command line of the next start.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "agent".to_owned(),
            "--name".to_owned(),
            self.name.clone(),
            "--cluster".to_owned(),
            self.cluster.clone(),
            "--bind".to_owned(),
            self.bind.to_string(),
            "--http".to_owned(),
            self.http.to_string(),
            "--data-dir".to_owned(),
            self.data_dir.display().to_string(),
            "--profile".to_owned(),
            "fast".to_owned(),
        ];
        for join in &self.join {
            args.extend(["--join".to_owned(), join.to_string()]);
        }
        for tag in &self.tags {
            args.extend(["--tag".to_owned(), tag.clone()]);
        }
        match self.bootstrap {
            Bootstrap::No => {}
            Bootstrap::Expect(n) => args.extend(["--bootstrap-expect".to_owned(), n.to_string()]),
            Bootstrap::Alone => args.push("--bootstrap".to_owned()),
        }
        args
    }

    /// Starts the process (it must not be running); its stdout and stderr go
    /// to a log file of this run.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.runs += 1;
        let args = self.args();
        let cwd = self.logs.parent().expect("the log dir is in the test dir").to_path_buf();
        self.child = Some(spawn_logged(&args, &self.log_path(self.runs), &cwd));
    }

    /// The log file of the current (or last) run.
    pub fn log(&self) -> PathBuf {
        self.log_path(self.runs)
    }

    fn log_path(&self, run: u32) -> PathBuf {
        self.logs.join(format!("{}.{run}.log", self.name))
    }

    /// What the current (or last) run wrote.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9`, and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM; the process keeps running until it exits on its own.
    pub fn sigterm(&self) {
        unsafe extern "C" {
            fn kill(pid: i32, signal: i32) -> i32;
        }
        const SIGTERM: i32 = 15;
        let pid = i32::try_from(self.pid()).expect("pid fits i32");
        // SAFETY: kill(2) with a pid of our own child, which is not reaped yet.
        let result = unsafe { kill(pid, SIGTERM) };
        assert_eq!(result, 0, "kill -TERM {pid}: {}", std::io::Error::last_os_error());
    }

    /// The exit status, if the process has exited (it is then reaped).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait().expect("try_wait") {
            Some(status) => {
                self.child = None;
                Some(status)
            }
            None => None,
        }
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let since = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(
                since.elapsed() < limit,
                "{} did not exit within {limit:?}; its log:\n{}",
                self.name,
                tail(&self.log_text(), LOG_TAIL_LINES)
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Fails the test, with the log, if the process has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        let name = self.name.clone();
        match self.try_exit() {
            None => Ok(()),
            Some(status) => {
                panic!("{name} exited ({status}) unexpectedly; its log:\n{}", tail(&self.log_text(), LOG_TAIL_LINES))
            }
        }
    }

    /// Its `/v1/status`, or why there is none.
    pub fn status(&self) -> Result<Status, String> {
        let body = http_get(self.http, "/v1/status")?;
        serde_json::from_str(&body).map_err(|error| format!("{}: bad status JSON {error}: {body}", self.name))
    }

    /// Its `/metrics` sample `name{labels}`, 0 if absent.
    pub fn metric(&self, sample: &str) -> Result<f64, String> {
        let body = http_get(self.http, "/metrics")?;
        Ok(metric_value(&body, sample).unwrap_or(0.0))
    }

    /// Waits until its status answers, failing at once (with the log) if the
    /// process exits.
    pub fn wait_status(&mut self, what: &str, mut check: impl FnMut(&Status) -> Result<(), String>) -> Status {
        let name = self.name.clone();
        wait_until(&format!("{name}: {what}"), SETTLE_LIMIT, || {
            self.check_running()?;
            let status = self.status()?;
            check(&status)?;
            Ok(status)
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && self.runs > 0 {
            eprintln!(
                "--- {} ({}), last lines ---\n{}",
                self.name,
                self.log().display(),
                tail(&self.log_text(), LOG_TAIL_LINES)
            );
        }
    }
}

/// Runs the binary with `args` to completion (at most [`EXIT_LIMIT`]):
/// its exit status and everything it printed.
pub fn run_to_exit(dir: &Path, label: &str, args: &[&str]) -> (ExitStatus, String) {
    let log = dir.join(format!("{label}.log"));
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let mut child = KillOnDrop(Some(spawn_logged(&args, &log, dir)));
    let since = Instant::now();
    loop {
        let process = child.0.as_mut().expect("running");
        if let Some(status) = process.try_wait().expect("try_wait") {
            child.0 = None;
            return (status, fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(
            since.elapsed() < EXIT_LIMIT,
            "quorate {args:?} still runs after {EXIT_LIMIT:?}; it printed:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns the binary in `cwd` (so a default `./NAME.quorate` data dir lands
/// in the test dir), its stdout and stderr both to `log`.
/// A `quorate` process that runs until it is dropped (a watch), its output
/// in `dir/{label}.log`.
pub struct Running {
    child: KillOnDrop,
    log: PathBuf,
}

impl Running {
    pub fn start(dir: &Path, label: &str, args: &[&str]) -> Self {
        let log = dir.join(format!("{label}.log"));
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        Running { child: KillOnDrop(Some(spawn_logged(&args, &log, dir))), log }
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        let _ = &self.child;
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn spawn_logged(args: &[String], log: &Path, cwd: &Path) -> Child {
    let out = File::create(log).expect("create the log file");
    let err = out.try_clone().expect("clone the log file");
    Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn quorate")
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn http_agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(3)))
            .http_status_as_error(false)
            // An agent restarted on the same port must not get a dead pooled connection.
            .max_idle_connections(0)
            .build()
            .into()
    })
}

/// GET `path` from `addr`: the body of a 2xx answer, or what went wrong.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let url = format!("http://{addr}{path}");
    let mut response = http_agent().get(&url).call().map_err(|error| format!("GET {url}: {error}"))?;
    let status = response.status();
    let body = response.body_mut().read_to_string().map_err(|error| format!("GET {url}: {error}"))?;
    if status.is_success() { Ok(body) } else { Err(format!("GET {url}: {status}: {body}")) }
}

/// PUT `body` to `path` at `addr`: the body of a 2xx answer, or what went
/// wrong (the status, when there was one, is in the message).
pub fn http_put(addr: SocketAddr, path: &str, body: &[u8]) -> Result<String, String> {
    let url = format!("http://{addr}{path}");
    let mut response = http_agent().put(&url).send(body).map_err(|error| format!("PUT {url}: {error}"))?;
    let status = response.status();
    let body = response.body_mut().read_to_string().map_err(|error| format!("PUT {url}: {error}"))?;
    if status.is_success() { Ok(body) } else { Err(format!("PUT {url}: {status}: {body}")) }
}

/// The value of the sample `sample` (name with labels, exactly as exposed).
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `check` until it returns `Ok`, failing after `limit` with the last
/// reason it gave.
pub fn wait_until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let since = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(reason) if since.elapsed() >= limit => {
                panic!("not done after {limit:?}: {what}\nlast seen: {reason}")
            }
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

/// `GET /v1/status`.
#[derive(Clone, Debug, Deserialize)]
pub struct Status {
    pub name: String,
    pub id: String,
    pub addr: String,
    pub boot_id: u64,
    pub term: u64,
    pub leader: Option<String>,
    pub leader_id: Option<String>,
    pub is_leader: bool,
    pub epoch: u64,
    pub stable: bool,
    pub active: bool,
    pub view: Vec<String>,
    pub members: Vec<Member>,
}

/// One entry of `members` in `/v1/status`.
#[derive(Clone, Debug, Deserialize)]
pub struct Member {
    pub name: String,
    pub id: String,
    pub addr: String,
    pub state: String,
    pub incarnation: u64,
    pub leaving: bool,
}

impl Status {
    /// The entry for durable id `id`.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The view's names, sorted.
    pub fn sorted_view(&self) -> Vec<String> {
        let mut view = self.view.clone();
        view.sort();
        view
    }

    /// One line for failure messages.
    pub fn brief(&self) -> String {
        let mut members = String::new();
        for m in &self.members {
            let _ = write!(members, " {}/{}={}{}", m.name, m.id, m.state, if m.leaving { "(leaving)" } else { "" });
        }
        format!(
            "{}[{} boot {} term {}]: leader {:?} epoch {} stable {} active {} view {:?} members{members}",
            self.name, self.id, self.boot_id, self.term, self.leader, self.epoch, self.stable, self.active, self.view
        )
    }
}

/// Whether every agent of `agents` agrees on one leader among them and one
/// stable view of exactly them, with each of them alive in every member
/// table. Their statuses, in the order given, or what is not there yet.
pub fn settled(agents: &mut [&mut Agent]) -> Result<Vec<Status>, String> {
    let mut statuses = Vec::with_capacity(agents.len());
    for agent in agents.iter_mut() {
        agent.check_running()?;
        statuses.push(agent.status()?);
    }
    let describe = |statuses: &[Status]| statuses.iter().map(Status::brief).collect::<Vec<_>>().join("\n  ");
    let mut names: Vec<String> = statuses.iter().map(|s| s.name.clone()).collect();
    names.sort();
    let first = &statuses[0];
    let ok = first.leader.as_ref().is_some_and(|leader| names.contains(leader))
        && statuses.iter().all(|s| {
            s.leader_id.is_some()
                && s.leader_id == first.leader_id
                && s.stable
                && s.active
                && s.epoch == first.epoch
                && s.sorted_view() == names
                && statuses.iter().all(|other| s.member(&other.id).is_some_and(|m| m.state == "alive"))
        });
    if ok { Ok(statuses) } else { Err(format!("\n  {}", describe(&statuses))) }
}

/// Waits until [`settled`] holds.
pub fn wait_settled(what: &str, agents: &mut [&mut Agent]) -> Vec<Status> {
    wait_until(what, SETTLE_LIMIT, || settled(agents))
}

/// `n` agents `n1`..`nN` in `dir` that bootstrap together (each with
/// `--bootstrap-expect N`, each told every other's address), started, and
/// settled.
pub fn bootstrap_cluster(dir: &Path, n: usize) -> Vec<Agent> {
    bootstrap_cluster_with(dir, n, |_, _| {})
}

/// [`bootstrap_cluster`], each agent passed to `configure` (with its index)
/// before it starts.
pub fn bootstrap_cluster_with(dir: &Path, n: usize, configure: impl Fn(usize, &mut Agent)) -> Vec<Agent> {
    let mut agents: Vec<Agent> = (1..=n).map(|i| Agent::new(dir, &format!("n{i}"))).collect();
    for (index, agent) in agents.iter_mut().enumerate() {
        configure(index, agent);
    }
    let addrs: Vec<SocketAddr> = agents.iter().map(|a| a.bind).collect();
    for agent in &mut agents {
        agent.join = addrs.iter().copied().filter(|addr| *addr != agent.bind).collect();
        agent.bootstrap = Bootstrap::Expect(n as u32);
        agent.start();
    }
    wait_settled("the new cluster settles", &mut agents.iter_mut().collect::<Vec<_>>());
    agents
}

/// The file store's log, read without changing it. Mirrors
/// `net/src/storage/file.rs`: `[length u32 LE][crc32c u32 LE][postcard
/// payload]`, a header record first, then one record per `PersistState`.
#[derive(Clone, Debug)]
pub struct Wal {
    pub bytes: Vec<u8>,
    /// Where each valid record lies.
    pub records: Vec<Range<usize>>,
    /// Bytes up to the end of the last valid record.
    pub valid_len: usize,
    /// What follows the valid records, if anything.
    pub tail: Tail,
    /// The header's durable id.
    pub member_id: MemberId,
    /// The records replayed, as the store replays them.
    pub recovered: Recovered,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The file ends with a whole record.
    Clean,
    /// A damaged record with nothing valid after it: a torn write.
    Torn { offset: usize, reason: String },
    /// A damaged record with valid ones after it: corruption.
    Corrupt { offset: usize, reason: String },
}

/// The store's record, mirrored to decode it.
#[derive(Debug, Deserialize)]
enum Record {
    Header {
        #[allow(dead_code)]
        format: u32,
        member_id: MemberId,
    },
    Write(PersistState),
}

pub const WAL_FILE: &str = "quorate.wal";
const RECORD_HEADER_BYTES: usize = 8;

impl Wal {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(WAL_FILE)
    }

    /// Reads and scans `data_dir`'s log.
    pub fn read(data_dir: &Path) -> Wal {
        let path = Wal::path(data_dir);
        let bytes = fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
        Wal::scan(bytes)
    }

    pub fn scan(bytes: Vec<u8>) -> Wal {
        let mut records = Vec::new();
        let mut offset = 0;
        let mut tail = Tail::Clean;
        let mut member_id = None;
        let mut recovered = Recovered::default();
        while offset < bytes.len() {
            match record_at(&bytes, offset) {
                Ok((record, next)) => {
                    match record {
                        Record::Header { member_id: id, .. } => {
                            assert!(member_id.is_none(), "a second header at byte {offset}");
                            member_id = Some(id);
                        }
                        Record::Write(write) => {
                            assert!(member_id.is_some(), "a write before the header at byte {offset}");
                            recovered.apply(&write);
                        }
                    }
                    records.push(offset..next);
                    offset = next;
                }
                Err(reason) => {
                    let after = (offset + 1..bytes.len()).any(|at| record_at(&bytes, at).is_ok());
                    tail = if after { Tail::Corrupt { offset, reason } } else { Tail::Torn { offset, reason } };
                    break;
                }
            }
        }
        let member_id = member_id.expect("the log has a valid header");
        Wal { valid_len: offset, bytes, records, tail, member_id, recovered }
    }

    /// The durable id as `/v1/status` shows it.
    pub fn id(&self) -> String {
        self.member_id.to_string()
    }

    pub fn boot_id(&self) -> u64 {
        self.recovered.boot_id
    }

    pub fn term(&self) -> u64 {
        self.recovered.raft.term
    }

    pub fn cluster_uuid(&self) -> ClusterUuid {
        self.recovered.cluster_uuid
    }
}

fn record_at(bytes: &[u8], offset: usize) -> Result<(Record, usize), String> {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_HEADER_BYTES {
        return Err(format!("{} bytes, short of a record header", rest.len()));
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if rest.len() < RECORD_HEADER_BYTES + len {
        return Err(format!("record of {len} bytes runs past the end"));
    }
    let payload = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
    if crc32c::crc32c(payload) != crc {
        return Err("checksum mismatch".to_owned());
    }
    // A payload with a good checksum that does not decode means this mirror
    // fell behind the store's format, not that the file is damaged.
    let record = postcard::from_bytes(payload).unwrap_or_else(|error| {
        panic!("a checksummed record at byte {offset} does not decode ({error}): update the mirror in tests/support")
    });
    Ok((record, offset + RECORD_HEADER_BYTES + len))
}
