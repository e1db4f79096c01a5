//! Multi-host tests: real `quorate agent` processes, each in its own network
//! namespace on a bridge, with loss and cut links made by nftables on the
//! receiving side (as a real lossy link or firewall behaves; a sender-side
//! drop returns EPERM, which no real network does).
//!
//! Needs root (CAP_NET_ADMIN), `ip` (iproute2) and `nft` (nftables). Without
//! them every test is reported as ignored, with the reason, never as passed.

// The agents and their HTTP client exist only outside the simulator.
#[cfg(not(madsim))]
#[path = "netns/real.rs"]
mod real;

#[cfg(not(madsim))]
fn main() {
    real::main();
}

#[cfg(madsim)]
fn main() {}
