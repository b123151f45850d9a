//! Where a child listens. `roaming up` and `roaming serve` bind the addresses
//! they are given, port 0 included, and print one line per listener as soon as
//! it is bound: `listening service=<name> addr=<ip:port>` (services/roaming's
//! `host::report_bound`). A harness sends the child's stdout to a file and
//! reads those lines back from where this child's output begins, so it never
//! probes a free port and releases it for the child to take (another process
//! may take it first).

use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The address to give a child that should pick its own port.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// `("reservation", 127.0.0.1:43123)` from
/// `listening service=reservation addr=127.0.0.1:43123`.
pub fn parse(line: &str) -> Option<(&str, SocketAddr)> {
    let rest = line.trim().strip_prefix("listening service=")?;
    let (service, addr) = rest.split_once(" addr=")?;
    Some((service, addr.trim().parse().ok()?))
}

/// A child's output: a file, read from where this child's part begins (a
/// restarted process appends to the file of the one before).
#[derive(Debug, Clone)]
pub struct Output {
    path: PathBuf,
    from: u64,
}

impl Output {
    /// The output a child started from now on writes to `path`.
    pub fn from_end_of(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            from: std::fs::metadata(path).map_or(0, |m| m.len()),
        }
    }

    fn text(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.path)
            && file.seek(SeekFrom::Start(self.from)).is_ok()
        {
            let _ = file.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The address each of `services` reported, in that order, once all
    /// have; fails as soon as `child` exits, or after `within`.
    pub async fn addrs(
        &self,
        services: &[&str],
        child: &mut Child,
        within: Duration,
    ) -> anyhow::Result<Vec<SocketAddr>> {
        let started = Instant::now();
        loop {
            let text = self.text();
            let reported: Vec<(&str, SocketAddr)> = text.lines().filter_map(parse).collect();
            let found: Option<Vec<SocketAddr>> = services
                .iter()
                .map(|s| reported.iter().find(|(r, _)| r == s).map(|(_, a)| *a))
                .collect();
            if let Some(found) = found {
                return Ok(found);
            }
            if let Some(status) = child.try_wait().context("waiting for the child")? {
                bail!(
                    "exited ({status}) before reporting where {services:?} listen; its output ({}):\n{}",
                    self.path.display(),
                    last_lines(&text, 20)
                );
            }
            if started.elapsed() > within {
                bail!(
                    "no address reported for {services:?} within {within:?} ({})",
                    self.path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::SocketAddr;
    use std::process::Command;
    use std::time::Duration;

    use super::{Output, parse};

    #[test]
    fn a_report_line_reads_as_service_and_address() {
        let addr: SocketAddr = "127.0.0.1:43123".parse().unwrap();
        assert_eq!(
            parse("listening service=reservation addr=127.0.0.1:43123"),
            Some(("reservation", addr))
        );
        assert_eq!(parse("reservation listening on 127.0.0.1:43123"), None);
        assert_eq!(parse("listening service=view addr=nowhere"), None);
    }

    #[tokio::test]
    async fn the_addresses_come_from_this_childs_part_of_the_output() {
        let dir = std::env::temp_dir().join(format!("mesh-listening-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("a.log");
        // An earlier incarnation's line must not count.
        std::fs::write(&log, "listening service=view addr=127.0.0.1:1\n").unwrap();
        let output = Output::from_end_of(&log);
        let mut child = Command::new("sh")
            .args([
                "-c",
                "echo 'some log line'; echo 'listening service=view addr=127.0.0.1:2'; sleep 5",
            ])
            .stdout(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let addrs = output
            .addrs(&["view"], &mut child, Duration::from_secs(5))
            .await;
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(addrs.unwrap(), vec!["127.0.0.1:2".parse().unwrap()]);

        // A child that exits without reporting fails at once, with its output.
        let output = Output::from_end_of(&log);
        let mut child = Command::new("sh")
            .args(["-c", "echo 'address already in use'"])
            .stdout(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let e = output
            .addrs(&["gateway"], &mut child, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("address already in use"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
