//! A container's status as rbuild's exit code (`rbuild run`, `build --run`).

use std::process::ExitCode;

/// Ctrl-C or SIGTERM while a container runs: its status, as `docker run` gives it.
pub const INTERRUPTED: i32 = 130;

/// A container's status (0-255, 128+signal when killed) as rbuild's exit code byte;
/// anything else cannot come from a process and reads as a failure.
pub fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(255)
}

/// [`exit_byte`] as the process's exit code; None (no status reported) is 255.
pub fn exit_code(code: Option<i32>) -> ExitCode {
    ExitCode::from(exit_byte(code.unwrap_or(255)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_byte(42), 42);
        assert_eq!(exit_byte(137), 137);
        assert_eq!(exit_byte(300), 255);
        assert_eq!(exit_byte(-1), 255);
    }
}
