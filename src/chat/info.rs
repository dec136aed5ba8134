//! What the API shows about a session: [`SessionInfo`] for
//! `GET /api/sessions`, [`ExitInfo`] for how a program ended.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How a session's program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit status when it exited normally.
    pub code: Option<i32>,
    /// Signal number when a signal ended it.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// One number for `{"type":"exit","code":N}`: the exit status, or
    /// 128 + signal the way shells report it, or -1 when unknown.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => -1,
        }
    }
}

/// Whether the program still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Running,
    Exited,
}

/// What `GET /api/sessions` shows about a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub command: Vec<String>,
    pub pid: u32,
    /// RFC 3339, UTC, seconds precision.
    pub created_at: String,
    pub cols: u16,
    pub rows: u16,
    /// Viewers attached now.
    pub viewers: usize,
    /// The principal that started the session (`anonymous` without a
    /// credential).
    pub owner: String,
    /// Who is watching: each attached viewer's principal and whether it
    /// is read-only.
    pub watchers: Vec<Watcher>,
    pub status: SessionStatus,
    /// Exit status once exited normally.
    pub exit_code: Option<i32>,
    /// Signal number once ended by a signal.
    pub exit_signal: Option<i32>,
}

/// One attached viewer, as `GET /api/sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watcher {
    /// The viewer's principal (`anonymous` without a credential).
    pub principal: String,
    /// Attached under `access: read`: sees output, cannot type.
    pub read_only: bool,
}

/// `SystemTime` as RFC 3339 UTC (`2024-05-01T12:34:56Z`), without pulling in
/// a date crate for one format.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        let at = |s| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn shell_code_prefers_the_status_then_128_plus_signal() {
        let e = |code, signal| ExitInfo { code, signal };
        assert_eq!(e(Some(3), None).shell_code(), 3);
        assert_eq!(e(None, Some(9)).shell_code(), 137);
        assert_eq!(e(None, None).shell_code(), -1);
    }
}
