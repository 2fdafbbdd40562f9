//! The ONLINE/OFFLINE rule, the one place it is decided.

use chrono::{DateTime, Utc};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Online,
    Offline,
}

/// Whole seconds from `last_seen` to `now`, never negative (a reading stamped slightly in the
/// future, which the subscriber allows up to five minutes, counts as just seen).
pub fn seconds_since(last_seen: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - last_seen).num_seconds().max(0)
}

/// A panel is ONLINE while `now - last_seen <= offline_after_secs` (README, "REST API").
pub fn status(last_seen: DateTime<Utc>, now: DateTime<Utc>, offline_after_secs: u64) -> Status {
    let age = seconds_since(last_seen, now);
    if u64::try_from(age).is_ok_and(|age| age <= offline_after_secs) {
        Status::Online
    } else {
        Status::Offline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn online_up_to_and_including_the_limit_then_offline() {
        let seen = Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap();
        assert_eq!(
            status(seen, seen + Duration::seconds(300), 300),
            Status::Online
        );
        assert_eq!(
            status(seen, seen + Duration::milliseconds(300_999), 300),
            Status::Online
        );
        assert_eq!(
            status(seen, seen + Duration::seconds(301), 300),
            Status::Offline
        );
    }

    #[test]
    fn a_reading_from_the_near_future_counts_as_just_seen() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap();
        assert_eq!(seconds_since(now + Duration::seconds(30), now), 0);
        assert_eq!(status(now + Duration::seconds(30), now, 0), Status::Online);
    }
}
