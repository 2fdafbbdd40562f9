//! The state file: each panel's last energy register, so a restart continues where it stopped,
//! as a real meter register would (README, "MQTT messages").
//!
//! ```json
//! {
//!   "version": 1,
//!   "panels": {
//!     "PANEL_LANTAI_1": {"energy_kwh": 1043.250118, "timestamp": "2026-11-27T03:00:00.123Z"}
//!   }
//! }
//! ```
//!
//! A file that cannot be read is an error, never a reason to start from zero: a register that
//! jumps back and later forward again would look like real consumption. The operator decides
//! (fix the file or delete it). Panels no longer in `PANELS` keep their entry, so a panel that
//! is removed and added back continues too.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use energy_core::{PanelId, Reading};
use serde::{Deserialize, Serialize};

/// The format written by this program. A different number means another program's format.
const VERSION: u32 = 1;

/// Every panel's last register.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// By panel id; a `BTreeMap` keeps the file sorted and its diffs small.
    pub panels: BTreeMap<String, Register>,
}

/// One panel's register as last published.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub energy_kwh: f64,
    pub timestamp: DateTime<Utc>,
}

impl State {
    /// The saved register of `panel`, if it has one.
    pub fn energy_kwh(&self, panel: &PanelId) -> Option<f64> {
        self.panels.get(panel.as_str()).map(|r| r.energy_kwh)
    }

    pub fn record(&mut self, reading: &Reading) {
        self.panels.insert(
            reading.panel.to_string(),
            Register {
                energy_kwh: reading.energy_kwh,
                timestamp: reading.time,
            },
        );
    }
}

/// What is wrong with the state file; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "state file {path} is corrupt: {reason}; fix it, or delete it to start every register anew"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The on-disk form, with the version next to the state.
#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    #[serde(flatten)]
    state: State,
}

/// The state file at one path.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or `None` if there is no file yet.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        self.parse(&text)
            .map(Some)
            .map_err(|reason| StateError::Corrupt {
                path: self.path.clone(),
                reason,
            })
    }

    fn parse(&self, text: &str) -> Result<State, String> {
        let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.version != VERSION {
            return Err(format!(
                "version is {}, this program reads version {VERSION}",
                file.version
            ));
        }
        for (panel, register) in &file.state.panels {
            PanelId::parse(panel).map_err(|e| format!("panel {panel:?}: {e}"))?;
            if !(register.energy_kwh.is_finite() && register.energy_kwh >= 0.0) {
                return Err(format!(
                    "panel {panel:?} has energy_kwh {}, not a finite number >= 0",
                    register.energy_kwh
                ));
            }
        }
        Ok(file.state)
    }

    /// Replaces the file with `state` atomically: the new content goes to a temporary file in
    /// the same directory, reaches the disk, and is then renamed over the old one. A crash at
    /// any point leaves either the old file or the new one, never half of one.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        self.write_atomically(state)
            .map_err(|source| StateError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn write_atomically(&self, state: &State) -> io::Result<()> {
        let file = File {
            version: VERSION,
            state: state.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        json.push(b'\n');

        let temporary = self.temporary_path();
        let result = (|| {
            let mut out = fs::File::create(&temporary)?;
            out.write_all(&json)?;
            out.sync_all()?;
            fs::rename(&temporary, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        result?;
        // The rename itself is durable only once the directory is synced. Not every platform
        // can open a directory, so a failure here is not an error.
        if let Ok(dir) = fs::File::open(self.directory()) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The directory of the file; a bare file name lives in the working directory.
    fn directory(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// `.<name>.tmp` beside the file: the same file system, so the rename is atomic.
    fn temporary_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".to_owned());
        self.directory().join(format!(".{name}.tmp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn reading(panel: &str, energy_kwh: f64) -> Reading {
        Reading {
            panel: PanelId::parse(panel).unwrap(),
            power_kw: 12.5,
            energy_kwh,
            time: Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap(),
        }
    }

    fn in_temp_dir() -> (tempfile::TempDir, StateFile) {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        (dir, file)
    }

    fn corrupt_reason(file: &StateFile, text: &str) -> String {
        fs::write(file.path(), text).unwrap();
        let err = file.load().expect_err("corrupt file accepted");
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("delete it"), "{message}");
        message
    }

    #[test]
    fn a_missing_file_is_no_state_yet() {
        let (_dir, file) = in_temp_dir();
        assert_eq!(file.load().unwrap(), None);
    }

    #[test]
    fn saved_registers_load_back_exactly() {
        let (_dir, file) = in_temp_dir();
        let mut state = State::default();
        state.record(&reading("PANEL_LANTAI_1", 1_043.250_118_123_456_7));
        state.record(&reading("PANEL_LANTAI_2", 0.0));
        // serde_json's default float parser reads this one back one bit low.
        state.record(&reading("PANEL_LANTAI_3", 2_045.282_521_753_201_8));
        file.save(&state).unwrap();
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded, state);
        let panel = PanelId::parse("PANEL_LANTAI_1").unwrap();
        assert_eq!(loaded.energy_kwh(&panel), Some(1_043.250_118_123_456_7));
    }

    #[test]
    fn the_file_has_the_documented_shape() {
        let (_dir, file) = in_temp_dir();
        let mut state = State::default();
        state.record(&reading("P", 7.5));
        file.save(&state).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(file.path()).unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "version": 1,
                "panels": {"P": {"energy_kwh": 7.5, "timestamp": "2026-11-27T03:00:00Z"}}
            })
        );
    }

    #[test]
    fn save_replaces_the_whole_file_and_leaves_no_temporary_behind() {
        let (dir, file) = in_temp_dir();
        let mut state = State::default();
        for i in 0..20 {
            state.record(&reading(&format!("PANEL_{i}"), 1.0));
        }
        file.save(&state).unwrap();
        let small = State::default();
        file.save(&small).unwrap();
        assert_eq!(file.load().unwrap().unwrap(), small);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_stale_temporary_from_a_crash_does_not_matter() {
        let (dir, file) = in_temp_dir();
        fs::write(dir.path().join(".state.json.tmp"), "half a fi").unwrap();
        let mut state = State::default();
        state.record(&reading("P", 3.0));
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap().unwrap(), state);
    }

    #[test]
    fn a_bare_file_name_is_saved_in_the_working_directory() {
        let file = StateFile::new("state.json");
        assert_eq!(file.directory(), Path::new("."));
        assert_eq!(file.temporary_path(), Path::new("./.state.json.tmp"));
    }

    #[test]
    fn a_corrupt_file_is_an_error_that_names_the_file() {
        let (_dir, file) = in_temp_dir();
        corrupt_reason(&file, "");
        corrupt_reason(
            &file,
            "{\"version\": 1, \"panels\": {\"P\": {\"energy_kwh\": 1",
        );
        corrupt_reason(&file, "[]");
        corrupt_reason(&file, r#"{"panels": {}}"#);
        let message = corrupt_reason(&file, r#"{"version": 2, "panels": {}}"#);
        assert!(message.contains("version is 2"), "{message}");
        let message = corrupt_reason(
            &file,
            r#"{"version": 1, "panels": {"P": {"energy_kwh": -1, "timestamp": "2026-11-27T03:00:00Z"}}}"#,
        );
        assert!(message.contains("-1"), "{message}");
        corrupt_reason(
            &file,
            r#"{"version": 1, "panels": {"P": {"energy_kwh": "12", "timestamp": "2026-11-27T03:00:00Z"}}}"#,
        );
        corrupt_reason(
            &file,
            r#"{"version": 1, "panels": {"A B": {"energy_kwh": 1, "timestamp": "2026-11-27T03:00:00Z"}}}"#,
        );
        corrupt_reason(
            &file,
            r#"{"version": 1, "panels": {"P": {"energy_kwh": 1, "timestamp": "soon"}}}"#,
        );
    }

    #[test]
    fn an_unwritable_location_is_a_write_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("no-such-dir").join("state.json"));
        let err = file.save(&State::default()).unwrap_err();
        assert!(matches!(err, StateError::Write { .. }), "{err}");
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }
}
