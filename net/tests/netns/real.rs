//! The tests themselves; `netns.rs` leaves them out of the simulator build.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_quorate");
const AGENT_PORT: u16 = 7946;
const HTTP_PORT: u16 = 8800;

pub fn main() {
    let arguments = Arguments::from_args();
    let missing = prerequisites();
    let trials = vec![
        Trial::test("no_live_member_is_declared_dead_under_ten_percent_loss_and_a_crash_is_detected", loss_test),
        Trial::test("a_cut_leader_is_replaced_and_the_halves_merge_after_the_heal", cut_test),
    ];
    let trials = trials
        .into_iter()
        .map(|trial| match &missing {
            Some(reason) => trial.with_ignored_flag(true).with_kind(reason.clone()),
            None => trial,
        })
        .collect();
    if let Some(reason) = &missing {
        eprintln!("netns tests not run: {reason}");
    }
    libtest_mimic::run(&arguments, trials).exit();
}

/// Why these tests cannot run here, if they cannot.
fn prerequisites() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { geteuid() } != 0 {
        return Some("needs root to create network namespaces".to_owned());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            return Some(format!("needs `{tool}` (iproute2 / nftables)"));
        }
    }
    None
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

fn run(command: &str) -> Result<String, Failed> {
    let output = Command::new("sh").arg("-c").arg(command).output().map_err(|e| format!("{command}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{command}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A bridge in the root namespace and one namespace per host, each with a
/// veth on the bridge. Torn down (agents killed, namespaces deleted) on drop.
struct Network {
    tag: String,
    subnet: u8,
    hosts: usize,
    agents: Vec<Option<Child>>,
    dir: PathBuf,
}

impl Network {
    fn new(name: &str, hosts: usize) -> Result<Network, Failed> {
        // Short, unique names: interface names are at most 15 bytes.
        let id = std::process::id() % 10_000;
        let tag = format!("q{id}{}", &name[..1]);
        // Two networks per process (one per test), each in its own /24.
        let subnet = 10 + (id % 100) as u8 * 2 + u8::from(name.starts_with('c'));
        let dir = std::env::temp_dir().join(format!("quorate-netns-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let network = Network { tag, subnet, hosts, agents: Vec::new(), dir };
        network.teardown_links();
        let (tag, subnet) = (&network.tag, network.subnet);
        run(&format!(
            "ip link add {tag}b type bridge && ip addr add 10.{subnet}.0.254/24 dev {tag}b && ip link set {tag}b up"
        ))?;
        for host in 0..hosts {
            let ns = network.namespace(host);
            run(&format!(
                "ip netns add {ns} && ip link add {tag}h{host} type veth peer name {tag}s{host} && \
                 ip link set {tag}h{host} netns {ns} && ip link set {tag}s{host} master {tag}b up && \
                 ip netns exec {ns} ip addr add {ip}/24 dev {tag}h{host} && \
                 ip netns exec {ns} ip link set {tag}h{host} up && ip netns exec {ns} ip link set lo up && \
                 ip netns exec {ns} nft add table inet quorate && \
                 ip netns exec {ns} nft add chain inet quorate input '{{ type filter hook input priority 0; policy accept; }}'",
                ip = network.ip(host),
            ))?;
        }
        Ok(network)
    }

    fn namespace(&self, host: usize) -> String {
        format!("{}n{host}", self.tag)
    }

    fn ip(&self, host: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, host as u8 + 1)
    }

    fn http(&self, host: usize) -> SocketAddr {
        SocketAddr::new(self.ip(host).into(), HTTP_PORT)
    }

    /// Starts the agent of `host`, joining through host 0.
    fn start(&mut self, host: usize, expect: usize) -> Result<(), Failed> {
        let ns = self.namespace(host);
        let log = std::fs::File::create(self.dir.join(format!("agent{host}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, BIN, "agent", "--name", &format!("h{host}")])
            .args(["--bind", &format!("{}:{AGENT_PORT}", self.ip(host))])
            .args(["--join", &format!("{}:{AGENT_PORT}", self.ip(0))])
            .args(["--http", &self.http(host).to_string()])
            .args(["--bootstrap-expect", &expect.to_string()])
            .args(["--profile", "lan", "--data-dir"])
            .arg(self.dir.join(format!("data{host}")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        if self.agents.len() <= host {
            self.agents.resize_with(host + 1, || None);
        }
        self.agents[host] = Some(child);
        Ok(())
    }

    fn kill(&mut self, host: usize) {
        if let Some(mut child) = self.agents[host].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Drops `percent` % of what `host` receives from the other hosts (not
    /// from the bridge address the test polls from).
    fn set_loss(&self, host: usize, percent: u32) -> Result<(), Failed> {
        let (ns, subnet) = (self.namespace(host), self.subnet);
        run(&format!(
            "ip netns exec {ns} nft add rule inet quorate input ip saddr 10.{subnet}.0.0/24 \
             ip saddr != 10.{subnet}.0.254 numgen random mod 100 '<' {percent} drop"
        ))?;
        Ok(())
    }

    /// Drops everything `host` receives from `from`.
    fn cut(&self, from: usize, host: usize) -> Result<(), Failed> {
        let ns = self.namespace(host);
        run(&format!("ip netns exec {ns} nft add rule inet quorate input ip saddr {} drop", self.ip(from)))?;
        Ok(())
    }

    fn heal(&self) -> Result<(), Failed> {
        for host in 0..self.hosts {
            run(&format!("ip netns exec {} nft flush chain inet quorate input", self.namespace(host)))?;
        }
        Ok(())
    }

    fn status(&self, host: usize) -> Option<Value> {
        let url = format!("http://{}/v1/status", self.http(host));
        let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().new_agent();
        agent.get(&url).call().ok()?.body_mut().read_json().ok()
    }

    fn teardown_links(&self) {
        for host in 0..self.hosts {
            let namespace = self.namespace(host);
            let _ = Command::new("ip").args(["netns", "del", &namespace]).stderr(Stdio::null()).status();
        }
        let _ = Command::new("ip").args(["link", "del", &format!("{}b", self.tag)]).stderr(Stdio::null()).status();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in 0..self.agents.len() {
            self.kill(host);
        }
        self.teardown_links();
    }
}

/// Polls `done` every 100 ms until it holds or `limit` passes.
fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<Duration, Failed> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            return Err(format!("not within {limit:?}: {what}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(started.elapsed())
}

/// Every one of `hosts` answers, knows the same leader and a stable view of exactly `hosts`.
fn settled(network: &Network, hosts: &[usize]) -> bool {
    let statuses: Vec<Value> = hosts.iter().filter_map(|&h| network.status(h)).collect();
    if statuses.len() != hosts.len() {
        return false;
    }
    let mut names: Vec<String> = hosts.iter().map(|h| format!("h{h}")).collect();
    names.sort();
    let leader = &statuses[0]["leader"];
    statuses.iter().all(|status| {
        let mut view: Vec<String> = status["view"]
            .as_array()
            .map(|v| v.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        view.sort();
        !leader.is_null() && &status["leader"] == leader && status["stable"] == true && view == names
    })
}

/// Members each status reports dead, as (observer, member).
fn dead_members(network: &Network, hosts: &[usize]) -> Vec<(usize, String)> {
    let mut dead = Vec::new();
    for &host in hosts {
        let Some(status) = network.status(host) else { continue };
        for member in status["members"].as_array().into_iter().flatten() {
            if member["state"] == "dead" {
                dead.push((host, member["name"].as_str().unwrap_or("?").to_owned()));
            }
        }
    }
    dead
}

fn loss_test() -> Result<(), Failed> {
    const HOSTS: usize = 5;
    let mut network = Network::new("loss", HOSTS)?;
    for host in 0..HOSTS {
        network.start(host, HOSTS)?;
    }
    let all: Vec<usize> = (0..HOSTS).collect();
    eventually("five hosts settle on one stable view", Duration::from_secs(30), || settled(&network, &all))?;
    for host in 0..HOSTS {
        network.set_loss(host, 10)?;
    }
    // S6 under real loss: 90 s at 10 %, nobody declared dead.
    let watch_until = Instant::now() + Duration::from_secs(90);
    while Instant::now() < watch_until {
        let dead = dead_members(&network, &all);
        if !dead.is_empty() {
            return Err(format!(
                "live members declared dead under 10 % loss: {dead:?} (logs in {})",
                network.dir.display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // A real crash under the same loss is still detected by every survivor.
    network.kill(4);
    let survivors: Vec<usize> = (0..4).collect();
    let detected = eventually("every survivor marks the crash dead", Duration::from_secs(20), || {
        survivors.iter().all(|&h| dead_members(&network, &[h]).iter().any(|(_, name)| name == "h4"))
    })?;
    eprintln!("netns: crash detected by every survivor {detected:.2?} after kill -9, under 10 % loss");
    let false_deaths: Vec<_> =
        dead_members(&network, &survivors).into_iter().filter(|(_, name)| name != "h4").collect();
    if !false_deaths.is_empty() {
        return Err(format!("live members declared dead: {false_deaths:?}").into());
    }
    Ok(())
}

fn cut_test() -> Result<(), Failed> {
    const HOSTS: usize = 5;
    let mut network = Network::new("cut", HOSTS)?;
    for host in 0..HOSTS {
        network.start(host, HOSTS)?;
    }
    let all: Vec<usize> = (0..HOSTS).collect();
    eventually("five hosts settle", Duration::from_secs(30), || settled(&network, &all))?;
    let leader_name = network.status(0).and_then(|s| s["leader"].as_str().map(str::to_owned)).ok_or("no leader")?;
    let leader: usize = leader_name[1..].parse()?;
    // Cut the leader off: every link into it and out of it, dropped on the receiving side.
    for other in all.iter().copied().filter(|&h| h != leader) {
        network.cut(other, leader)?;
        network.cut(leader, other)?;
    }
    let majority: Vec<usize> = all.iter().copied().filter(|&h| h != leader).collect();
    let replaced = eventually("the majority elects another leader", Duration::from_secs(20), || {
        majority
            .iter()
            .all(|&h| network.status(h).is_some_and(|s| s["leader"].as_str().is_some_and(|l| l != leader_name)))
    })?;
    eprintln!("netns: a new leader {replaced:.2?} after the old one was cut off");
    network.heal()?;
    eventually("all five merge into one stable view", Duration::from_secs(60), || settled(&network, &all))?;
    Ok(())
}
