//! Times as folio writes them in its objects, answers, webhooks and reports:
//! RFC 3339 in UTC with exactly three fractional digits (`2026-11-29T20:00:00.300Z`),
//! so that every time in one answer reads alike and sorts as text. Use with
//! `#[serde(with = "crate::resources::times::ms")]`, or `optional_ms` for an
//! `Option<Timestamp>`. Reading accepts any RFC 3339 time.

/// A `Timestamp` to the millisecond.
pub mod ms {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write `time` as `…T20:00:00.300Z`.
    pub fn serialize<S: Serializer>(time: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{time:.3}"))
    }

    /// Read any RFC 3339 time.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        Timestamp::deserialize(deserializer)
    }
}

/// An `Option<Timestamp>` to the millisecond.
pub mod optional_ms {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write `time` as `…T20:00:00.300Z`, or null.
    pub fn serialize<S: Serializer>(time: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::ms::serialize(time, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Read any RFC 3339 time, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<Timestamp>::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Times {
        #[serde(with = "super::ms")]
        at: Timestamp,
        #[serde(with = "super::optional_ms", default)]
        maybe: Option<Timestamp>,
    }

    #[test]
    fn times_are_written_with_exactly_three_fractional_digits() {
        let cases = [
            ("2026-11-29T20:00:00Z", "2026-11-29T20:00:00.000Z"),
            ("2026-11-29T20:00:00.3Z", "2026-11-29T20:00:00.300Z"),
            ("2026-11-29T20:00:00.300470116Z", "2026-11-29T20:00:00.300Z"),
            ("2026-11-29T21:00:00.265+01:00", "2026-11-29T20:00:00.265Z"),
        ];
        for (read, written) in cases {
            let times = Times { at: read.parse().unwrap(), maybe: Some(read.parse().unwrap()) };
            let json = serde_json::to_value(&times).unwrap();
            assert_eq!((json["at"].as_str(), json["maybe"].as_str()), (Some(written), Some(written)), "{read}");
        }
        let none = serde_json::to_value(Times { at: Timestamp::UNIX_EPOCH, maybe: None }).unwrap();
        assert!(none["maybe"].is_null());
        let back: Times = serde_json::from_value(serde_json::json!({"at": "2026-11-29T20:00:00.3Z"})).unwrap();
        assert_eq!(back.maybe, None);
    }
}
