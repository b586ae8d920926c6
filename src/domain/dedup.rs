//! The bounded window of recently processed event ids carried in the state.
//!
//! The window keeps the workflow state small across continue-as-new; it is a
//! fast first line of defence, not the durable record (that is the ledger).

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// How many recent event ids an account remembers.
pub const DEDUP_WINDOW: usize = 1_000;

/// Recent event ids, oldest first; serialized as a plain JSON array of strings
/// (`processed_event_ids` in the wire contract). An index beside the list
/// makes a lookup constant-time: every accrual is looked up, and a replayed
/// run looks up thousands in a row.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "VecDeque<String>", into = "VecDeque<String>")]
pub struct RecentIds(VecDeque<String>, HashMap<String, u32>);

impl PartialEq for RecentIds {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for RecentIds {}

impl From<VecDeque<String>> for RecentIds {
    fn from(ids: VecDeque<String>) -> Self {
        let mut index = HashMap::with_capacity(ids.len());
        for id in &ids {
            *index.entry(id.clone()).or_default() += 1;
        }
        Self(ids, index)
    }
}

impl From<RecentIds> for VecDeque<String> {
    fn from(ids: RecentIds) -> Self {
        ids.0
    }
}

impl RecentIds {
    /// Whether `id` is inside the window.
    pub fn contains(&self, id: &str) -> bool {
        self.1.contains_key(id)
    }

    /// Remembers `id`, forgetting the oldest ids beyond the window.
    pub fn remember(&mut self, id: String) {
        self.remember_within(id, DEDUP_WINDOW);
    }

    /// Remembers `id`, forgetting the oldest ids beyond `capacity` (at least
    /// the window): an account keeps every id the ledger does not hold yet
    /// on top of the window, so a resend racing its own write is caught.
    pub fn remember_within(&mut self, id: String, capacity: usize) {
        *self.1.entry(id.clone()).or_default() += 1;
        self.0.push_back(id);
        while self.0.len() > capacity.max(DEDUP_WINDOW) {
            let Some(old) = self.0.pop_front() else { break };
            if let Some(count) = self.1.get_mut(&old) {
                *count -= 1;
                if *count == 0 {
                    self.1.remove(&old);
                }
            }
        }
    }

    /// The ids held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
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
    fn a_larger_capacity_keeps_more() {
        let mut ids = RecentIds::default();
        for i in 0..DEDUP_WINDOW + 10 {
            ids.remember_within(format!("e{i}"), DEDUP_WINDOW + 10);
        }
        assert!(ids.contains("e0"));
        ids.remember("last".into());
        assert!(!ids.contains("e10"), "shrinks back to the window");
        assert_eq!(ids.len(), DEDUP_WINDOW);
    }

    #[test]
    fn serializes_as_a_plain_array() {
        let mut ids = RecentIds::default();
        ids.remember("a".into());
        assert_eq!(serde_json::to_string(&ids).unwrap(), r#"["a"]"#);
        let back: RecentIds = serde_json::from_str(r#"["a","b","a"]"#).unwrap();
        assert!(back.contains("b"));
        let mut back = back;
        for i in 0..DEDUP_WINDOW - 1 {
            back.remember(format!("n{i}"));
        }
        assert!(back.contains("a"), "the second a is still inside");
        back.remember("last".into());
        assert!(!back.contains("a"), "both copies gone");
    }
}
