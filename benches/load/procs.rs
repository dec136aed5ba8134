//! Child processes on loopback and what `/proc` says about them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Raise the soft fd limit to the hard one: the idle-socket figure holds
/// 10,000 sockets on each side. Children inherit it.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        r.rlim_cur
    }
}

/// A child process, killed (and reaped) when dropped.
pub struct Proc {
    pub child: Child,
    /// Lines the child printed on stdout.
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Spawn `cmd` with stdout piped (read line by line), stderr discarded
    /// unless `BENCH_VERBOSE` is set.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Proc> {
        let stderr = if std::env::var_os("BENCH_VERBOSE").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc { child, lines: rx })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ask the child to stop (SIGTERM) and wait for it, at most `timeout`;
    /// whether it exited on its own. A process built to write a profile
    /// (the PGO training run) writes it only when it exits so, not when
    /// it is killed.
    pub fn stop(&mut self, timeout: Duration) -> bool {
        let Ok(pid) = libc::pid_t::try_from(self.pid()) else {
            return false;
        };
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Wait (bounded) for a stdout line starting with `prefix`; the rest.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return Some(rest.trim().to_string());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        return None;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        None
    }

    /// Resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fn fds(&self) -> usize {
        fd_count(self.pid())
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The plain release build of dashgate, the one cargo built this bench
/// with.
pub const PLAIN_BIN: &str = env!("CARGO_BIN_EXE_dashgate");

/// The dashgate binary the bench measures: `DASHGATE_BENCH_BIN` when set
/// (`make bench` sets it to the profile-guided build of `make release`,
/// the one to deploy), else [`PLAIN_BIN`].
pub fn server_bin() -> String {
    std::env::var("DASHGATE_BENCH_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| PLAIN_BIN.to_string())
}

/// Whether the measured binary is another build than [`PLAIN_BIN`].
pub fn measures_other_build() -> bool {
    server_bin() != PLAIN_BIN
}

/// A dashgate binary ([`server_bin`] unless told otherwise) serving on
/// 127.0.0.1:0 with the `secure` preset and [`super::TOKEN`] as its
/// startup token.
pub struct Dashgate {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Dashgate {
    pub fn start(extra: &[&str]) -> Dashgate {
        Self::start_env(extra, &[])
    }

    /// [`Self::start`] with extra environment variables.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Dashgate {
        Self::start_bin(&server_bin(), extra, env)
    }

    /// [`Self::start_env`] of the binary `bin`.
    pub fn start_bin(bin: &str, extra: &[&str], env: &[(&str, &str)]) -> Dashgate {
        let mut cmd = Command::new(bin);
        cmd.envs(env.iter().copied());
        cmd.args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(["--max-connections", "20000", "--max-sockets", "20000"])
            // Every load generator connects from 127.0.0.1.
            .args(["--max-connections-per-client", "20000"])
            .args(extra)
            .env("DASHGATE_TOKEN", super::TOKEN)
            .env_remove("DASHGATE_POLICY")
            .env_remove("DASHGATE_INSECURE")
            .env_remove("HERMES_DASHBOARD_INSECURE")
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn(cmd).expect("spawn dashgate");
        let addr = proc
            .wait_line("listening on ", Duration::from_secs(20))
            .expect("dashgate printed no `listening on` line");
        let addr = addr
            .strip_prefix("https://")
            .or_else(|| addr.strip_prefix("http://"))
            .unwrap_or(&addr)
            .parse()
            .expect("listening address");
        Dashgate { proc, addr }
    }
}

/// Sleep until `f` holds or `timeout` passes; whether it held.
pub async fn settle(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU time the process has run, ns: the sum over its threads of the first
/// field of `/proc/PID/task/TID/schedstat` (ns precision, unlike `stat`'s
/// clock ticks). Threads that exited are not counted, so compare only
/// across a span where the thread pool is stable (tokio's workers are).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// User and system CPU of the process so far, in clock ticks (`stat`
/// fields 14 and 15): coarse, but it says where the time goes.
pub fn user_system_ticks(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields count from after its `)`.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (
        f.get(11).copied().unwrap_or(0),
        f.get(12).copied().unwrap_or(0),
    )
}
