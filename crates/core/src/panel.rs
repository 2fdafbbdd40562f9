//! Panel identifiers: the last MQTT topic level and the InfluxDB `panel` tag.

use std::fmt;

/// Longest accepted panel id, in bytes.
pub const MAX_PANEL_ID_LEN: usize = 64;

/// A validated panel id: 1 to 64 characters from `[A-Za-z0-9_.-]` (README, "MQTT messages").
///
/// The character set keeps ids safe in a topic, a tag value and an InfluxQL string literal;
/// escaping still happens where those are built, so safety never rests on one check alone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PanelId(String);

/// Why a string is not a panel id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PanelIdError {
    #[error("panel id is empty")]
    Empty,
    #[error("panel id is {0} bytes long, more than {MAX_PANEL_ID_LEN}")]
    TooLong(usize),
    #[error("panel id contains {0:?}; only letters, digits, '_', '.' and '-' are allowed")]
    BadCharacter(char),
}

impl PanelId {
    pub fn parse(s: &str) -> Result<Self, PanelIdError> {
        if s.is_empty() {
            return Err(PanelIdError::Empty);
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(PanelIdError::BadCharacter(bad));
        }
        if s.len() > MAX_PANEL_ID_LEN {
            return Err(PanelIdError::TooLong(s.len()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PanelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for PanelId {
    type Err = PanelIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contract_character_set() {
        for ok in ["PANEL_LANTAI_1", "a", "x.y-z_0", &"A".repeat(64)] {
            assert_eq!(PanelId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        assert_eq!(PanelId::parse(""), Err(PanelIdError::Empty));
        assert_eq!(
            PanelId::parse(&"A".repeat(65)),
            Err(PanelIdError::TooLong(65))
        );
        for bad in [
            "a b", "a,b", "a=b", "a\"b", "a'b", "a\nb", "a+b", "a#b", "a/b", "é",
        ] {
            assert!(
                matches!(PanelId::parse(bad), Err(PanelIdError::BadCharacter(_))),
                "{bad:?} was accepted"
            );
        }
    }
}
