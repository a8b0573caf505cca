//! Reading the configuration and state, and writing the state atomically.

use allot_core::state::State;
use anyhow::{Context as _, Result};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Where the state lives: `--state`, or `allot.state.json` beside the configuration.
pub fn state_path(config: &Path, state: Option<&PathBuf>) -> PathBuf {
    match state {
        Some(p) => p.clone(),
        None => config.parent().map_or_else(|| PathBuf::from("allot.state.json"), |d| d.join("allot.state.json")),
    }
}

/// Reads the configuration text.
pub fn read_config(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read configuration {}", path.display()))
}

/// Reads the state; a missing file is the empty state.
pub fn read_state(path: &Path) -> Result<State> {
    match std::fs::read_to_string(path) {
        Ok(text) => State::from_json(&text).map_err(|e| anyhow::anyhow!("state file {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read state {}", path.display())),
    }
}

/// Writes the state atomically: a temporary file in the same directory, flushed, then renamed.
pub fn write_state(path: &Path, state: &State) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    let text = serde_json::to_string_pretty(state)?;
    tmp.write_all(text.as_bytes())?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Now, as RFC 3339 (whole seconds, UTC): the one clock, [`allot_server::now_seconds`].
pub fn now() -> String {
    allot_server::now_seconds()
}
