//! dmc-hil: device simulators and the hardware-in-the-loop bench.
fn main() {
    eprintln!("dmc-hil: not implemented yet (see README Status)");
    std::process::exit(1);
}
