//! The earning rules file (`LOYALTY_EARNING_RULES_FILE`): read and checked
//! once at start; a bad file stops the start with the field that failed.

use std::sync::Arc;

use crate::domain::earning::RuleBook;
use crate::setting::ConfigError;

/// The setting naming the file.
pub const FILE_SETTING: &str = "LOYALTY_EARNING_RULES_FILE";

/// Reads and checks the rules file at `path`: YAML when it ends in `.yaml`
/// or `.yml`, JSON otherwise.
pub fn load(path: &str) -> Result<Arc<RuleBook>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError { setting: FILE_SETTING, reason: format!("cannot read {path}: {e}") })?;
    let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
    RuleBook::parse(&text, yaml)
        .map(Arc::new)
        .map_err(|e| ConfigError { setting: FILE_SETTING, reason: format!("{path}: {e}") })
}
