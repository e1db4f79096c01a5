//! `quorate-sim`: the madsim simulation of the real adapter (sweep, replay).
//!
//! Builds only with `--cfg madsim` (`cargo sim ...`); the harness lands with
//! its own issue.

#[cfg(not(madsim))]
fn main() {
    eprintln!("quorate-sim must be built with --cfg madsim: run it as `cargo sim`");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    eprintln!("quorate-sim: the simulation harness is not built yet");
    std::process::exit(2);
}
