//! Durations are read once into `std::time::Duration`. The key names keep their unit
//! (`…_ms`, `…_seconds`), as the documented config has always had them, and the value is a
//! whole number of that unit.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

pub fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_secs)
}
