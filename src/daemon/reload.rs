//! SIGHUP: the config file `vidgest run` was given, re-read and validated as at start, and what
//! differs from the running config. The daemon applies it (`Daemon::reload`).

use crate::config::{Config, ConfigError};
use std::fmt;
use std::path::{Path, PathBuf};

/// A loaded config with the TOML it came from: tables are compared as written, so any change
/// to a camera's, delivery's or forwarder's table restarts that one alone.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub config: Config,
    raw: toml::Table,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file cannot be read or is invalid (every problem with its TOML path): the
    /// running config stays.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl ConfigFile {
    /// Reads, parses and validates `path` as `vidgest check` and `vidgest run` do.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let config = Config::parse(&text).map_err(|e| e.with_file(path))?;
        // Parsed once already, by `Config::parse`: valid TOML.
        let raw = text.parse::<toml::Table>().unwrap_or_default();
        Ok(ConfigFile {
            path: path.to_path_buf(),
            config,
            raw,
        })
    }

    /// The `[[camera]]` table named `name`, as written.
    pub fn camera_table(&self, name: &str) -> Option<toml::Value> {
        self.named_table("camera", name)
    }

    pub fn delivery_table(&self, name: &str) -> Option<toml::Value> {
        self.named_table("delivery", name)
    }

    pub fn forward_table(&self, name: &str) -> Option<toml::Value> {
        self.named_table("forward", name)
    }

    fn named_table(&self, array: &str, name: &str) -> Option<toml::Value> {
        self.raw
            .get(array)?
            .as_array()?
            .iter()
            .find(|t| t.get("name").and_then(toml::Value::as_str) == Some(name))
            .cloned()
    }

    /// The keys that differ from `old` but only take effect on a restart (`agent.data_dir`,
    /// `api.listen`, `[storage]`, `[detect]`, `[metrics]`, ...), as TOML paths.
    pub fn restart_keys(&self, old: &ConfigFile) -> Vec<String> {
        let mut keys = Vec::new();
        for section in ["agent", "storage", "detect", "metrics"] {
            keys.extend(changed_keys(&old.raw, &self.raw, section, None));
        }
        keys.extend(changed_keys(
            &old.raw,
            &self.raw,
            "api",
            Some(&[
                "listen",
                "max_connections",
                "header_timeout",
                "body_timeout",
                "tls_cert",
                "tls_key",
                "allow_unauthenticated",
                "session_hours",
            ]),
        ));
        keys
    }
}

/// The keys of `[section]` (only `only` when given) whose values differ between `old` and `new`.
fn changed_keys(
    old: &toml::Table,
    new: &toml::Table,
    section: &str,
    only: Option<&[&str]>,
) -> Vec<String> {
    let empty = toml::Table::new();
    let table = |t: &toml::Table| {
        t.get(section)
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    let (old, new) = (table(old), table(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| only.is_none_or(|o| o.contains(&k.as_str())))
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{section}.{k}"))
        .collect()
}

/// What a reload applied (logged as one line, and returned to the caller, e.g. for systemd's
/// STATUS=).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub cameras_added: Vec<String>,
    pub cameras_removed: Vec<String>,
    pub cameras_restarted: Vec<String>,
    /// Cameras that should run but could not start (logged with the reason).
    pub cameras_failed: Vec<String>,
    pub streams_created: Vec<String>,
    pub pipelines_started: Vec<String>,
    pub pipelines_stopped: Vec<String>,
    pub pipelines_restarted: Vec<String>,
    /// API tokens now in force.
    pub tokens: usize,
    /// Whether the TLS certificate and key were re-read successfully (None: no TLS).
    pub tls_reloaded: Option<bool>,
    /// Changed keys that need a restart to take effect (not applied).
    pub needs_restart: Vec<String>,
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, sign: &str, names: &[String]) -> fmt::Result {
            if names.is_empty() {
                write!(f, "{sign}0")
            } else {
                write!(f, "{sign}{} ({})", names.len(), names.join(", "))
            }
        }
        write!(f, "reload: cameras ")?;
        list(f, "+", &self.cameras_added)?;
        write!(f, ", ")?;
        list(f, "-", &self.cameras_removed)?;
        write!(f, ", ")?;
        list(f, "~", &self.cameras_restarted)?;
        if !self.cameras_failed.is_empty() {
            write!(f, ", failed ")?;
            list(f, "", &self.cameras_failed)?;
        }
        write!(f, "; streams ")?;
        list(f, "+", &self.streams_created)?;
        write!(f, "; deliveries/forwarders ")?;
        list(f, "+", &self.pipelines_started)?;
        write!(f, ", ")?;
        list(f, "-", &self.pipelines_stopped)?;
        write!(f, ", ")?;
        list(f, "~", &self.pipelines_restarted)?;
        write!(f, "; tokens {}", self.tokens)?;
        match self.tls_reloaded {
            Some(true) => write!(f, "; TLS reloaded")?,
            Some(false) => write!(f, "; TLS reload FAILED (old pair kept)")?,
            None => {}
        }
        if !self.needs_restart.is_empty() {
            write!(f, "; needs a restart: {}", self.needs_restart.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vidgest.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile::load(&path).unwrap()
    }

    const CAM: &str = "[[camera]]\nname = \"a\"\n[camera.source]\nkind = \"test\"\n";

    #[test]
    fn camera_tables_and_restart_keys_compare_as_written() {
        let old = file(&format!(
            "[agent]\ndata_dir = \"/d\"\n[api]\nlisten = \"127.0.0.1:1\"\n{CAM}"
        ));
        let same = file(&format!(
            "[agent]\ndata_dir = \"/d\"\n[api]\nlisten = \"127.0.0.1:1\"\n{CAM}"
        ));
        assert_eq!(old.camera_table("a"), same.camera_table("a"));
        assert!(same.restart_keys(&old).is_empty());
        let new = file(&format!(
            "[agent]\ndata_dir = \"/e\"\n[api]\nlisten = \"127.0.0.1:2\"\ncors_allow_origins = [\"https://x.example\"]\n{CAM}fps = 5\n"
        ));
        assert_ne!(old.camera_table("a"), new.camera_table("a"));
        assert_eq!(old.camera_table("b"), None);
        // CORS origins reload; the listener and the data dir do not
        assert_eq!(
            new.restart_keys(&old),
            vec!["agent.data_dir".to_string(), "api.listen".to_string()]
        );
    }

    #[test]
    fn an_invalid_file_names_the_toml_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vidgest.toml");
        std::fs::write(
            &path,
            "[agent]\ndata_dir = \"/d\"\n[[camera]]\nname = \"a\"\nfragment_duration = \"nope\"\n[camera.source]\nkind = \"test\"\n",
        )
        .unwrap();
        let e = ConfigFile::load(&path).unwrap_err();
        assert!(e.to_string().contains("camera[0].fragment_duration"), "{e}");
    }

    #[test]
    fn the_summary_is_one_line() {
        let s = ReloadSummary {
            cameras_added: vec!["x".into()],
            cameras_removed: vec!["y".into()],
            cameras_restarted: vec!["z".into()],
            tokens: 3,
            ..Default::default()
        };
        assert_eq!(
            s.to_string(),
            "reload: cameras +1 (x), -1 (y), ~1 (z); streams +0; deliveries/forwarders +0, -0, ~0; tokens 3"
        );
    }
}
