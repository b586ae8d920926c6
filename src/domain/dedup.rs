//! The bounded window of recently processed event ids carried in the state.
//!
//! The window keeps the workflow state small across continue-as-new; it is a
//! fast first line of defence, not the durable record (that is the ledger).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How many recent event ids an account remembers.
pub const DEDUP_WINDOW: usize = 1_000;

/// Recent event ids, oldest first; serialized as a plain JSON array of strings
/// (`processed_event_ids` in the wire contract).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecentIds(VecDeque<String>);

impl RecentIds {
    /// Whether `id` is inside the window.
    pub fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|seen| seen == id)
    }

    /// Remembers `id`, forgetting the oldest ids beyond the window.
    pub fn remember(&mut self, id: String) {
        self.0.push_back(id);
        while self.0.len() > DEDUP_WINDOW {
            self.0.pop_front();
        }
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_the_window() {
        let mut ids = RecentIds::default();
        for i in 0..=DEDUP_WINDOW {
            ids.remember(format!("e{i}"));
        }
        assert_eq!(ids.len(), DEDUP_WINDOW);
        assert!(!ids.contains("e0"), "oldest id must fall out of the window");
        assert!(ids.contains("e1"));
        assert!(ids.contains(&format!("e{DEDUP_WINDOW}")));
    }

    #[test]
    fn serializes_as_a_plain_array() {
        let mut ids = RecentIds::default();
        ids.remember("a".into());
        assert_eq!(serde_json::to_string(&ids).unwrap(), r#"["a"]"#);
        let back: RecentIds = serde_json::from_str(r#"["a","b"]"#).unwrap();
        assert!(back.contains("b"));
    }
}
