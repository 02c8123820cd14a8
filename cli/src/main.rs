//! `rbuild`: the command-line entry point.

fn main() {
    println!("rbuild {}", env!("CARGO_PKG_VERSION"));
}
