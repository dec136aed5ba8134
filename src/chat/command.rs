//! Which program a chat session runs (SPEC §3.1).
//!
//! `--chat-command` / `DASHGATE_CHAT_COMMAND` is parsed as shell words, so
//! `hermes --model "big one"` is three arguments, the way a user typed it in a
//! shell. Without it, the dashboard runs the hermes agent when it is installed
//! and otherwise a plain shell, so `dashgate` is useful out of the box.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The agent run by default when it is on `PATH`.
pub const DEFAULT_AGENT: &str = "hermes";

/// The last resort when neither the agent nor `$SHELL` is available.
pub const FALLBACK_SHELL: &str = "/bin/sh";

/// The chat command: `flag` (already merged with the environment variable by
/// the CLI) as shell words, else `hermes` when on `PATH`, else `$SHELL`, else
/// `/bin/sh`.
///
/// # Errors
/// A message naming the problem when `flag` is not valid shell words (an
/// unterminated quote) or holds no word at all.
pub fn resolve(flag: Option<&str>) -> Result<Vec<String>, String> {
    resolve_with(
        flag,
        std::env::var_os("PATH").as_deref(),
        std::env::var_os("SHELL").as_deref(),
    )
}

/// [`resolve`] with `PATH` and `SHELL` passed in, so tests do not depend on
/// (or mutate) the process environment.
///
/// # Errors
/// As [`resolve`].
pub fn resolve_with(
    flag: Option<&str>,
    path: Option<&OsStr>,
    shell: Option<&OsStr>,
) -> Result<Vec<String>, String> {
    if let Some(flag) = flag {
        let words = shell_words::split(flag)
            .map_err(|e| format!("--chat-command {flag:?} is not valid shell words: {e}"))?;
        if words.is_empty() {
            return Err("--chat-command is empty: give the program to run".into());
        }
        return Ok(words);
    }
    if path.is_some_and(|p| on_path(DEFAULT_AGENT, p)) {
        return Ok(vec![DEFAULT_AGENT.to_string()]);
    }
    if let Some(shell) = shell.and_then(OsStr::to_str).filter(|s| !s.is_empty()) {
        return Ok(vec![shell.to_string()]);
    }
    Ok(vec![FALLBACK_SHELL.to_string()])
}

/// Whether `name` is an executable file in one of the `PATH` directories.
fn on_path(name: &str, path: &OsStr) -> bool {
    std::env::split_paths(path).any(|dir| is_executable(&dir.join(name)))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_is_split_as_shell_words() {
        let got = resolve_with(Some(r#"hermes --model "big one" -v"#), None, None).unwrap();
        assert_eq!(got, ["hermes", "--model", "big one", "-v"]);
    }

    #[test]
    fn flag_with_an_open_quote_is_an_error() {
        let err = resolve_with(Some("sh -c 'echo"), None, None).unwrap_err();
        assert!(err.contains("shell words"), "{err}");
    }

    #[test]
    fn empty_flag_is_an_error() {
        assert!(resolve_with(Some("   "), None, None).is_err());
    }

    #[test]
    fn hermes_on_path_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("hermes");
        std::fs::write(&agent, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent".as_ref(), dir.path()]).unwrap();
        let got = resolve_with(None, Some(&path), Some("/bin/zsh".as_ref())).unwrap();
        assert_eq!(got, ["hermes"]);
    }

    #[test]
    fn a_non_executable_hermes_is_not_the_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hermes"), "not a program").unwrap();
        let got = resolve_with(
            None,
            Some(dir.path().as_os_str()),
            Some("/bin/zsh".as_ref()),
        );
        assert_eq!(got.unwrap(), ["/bin/zsh"]);
    }

    #[test]
    fn shell_then_bin_sh_are_the_fallbacks() {
        let empty = tempfile::tempdir().unwrap();
        let path = Some(empty.path().as_os_str());
        assert_eq!(
            resolve_with(None, path, Some("/bin/bash".as_ref())).unwrap(),
            ["/bin/bash"]
        );
        assert_eq!(
            resolve_with(None, path, Some("".as_ref())).unwrap(),
            ["/bin/sh"]
        );
        assert_eq!(resolve_with(None, None, None).unwrap(), ["/bin/sh"]);
    }
}
