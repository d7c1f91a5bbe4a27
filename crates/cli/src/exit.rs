//! Failures and the exit codes they map to.

use std::process::ExitCode;

/// Everything went as asked.
pub const OK: u8 = 0;
/// The runtime or something else operational failed.
pub const OPERATIONAL: u8 = 1;
/// The input was bad; the message names the flag and value.
pub const BAD_INPUT: u8 = 2;
/// The run finished but some removals failed.
pub const REMOVALS_FAILED: u8 = 3;

/// A failure that ends the command.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: BAD_INPUT,
            error: error.into(),
        }
    }

    /// Operational failure (exit 1).
    pub fn operational(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: OPERATIONAL,
            error: error.into(),
        }
    }

    /// Prints the error chain and returns the exit code.
    pub fn report(self) -> ExitCode {
        eprintln!("error: {}", chain(&self.error));
        ExitCode::from(self.code)
    }
}

/// The error and its causes on one line, without the repeats that layered libraries add
/// when each wraps and re-prints its source.
fn chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_drop_repeated_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io)
            .context("transport error: no such file")
            .context("cannot connect");
        assert_eq!(
            chain(&error),
            "cannot connect: transport error: no such file"
        );
    }
}
