//! Rates as operators write them: `600/m`, `10/s`, `1000/h`, or `{ rate: 600/m, burst: 100 }`
//! (DESIGN.md §5.10), for configuration and policy files alike.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

/// A rate as written: a string such as `600/m`, or a rate with an explicit burst.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawRate {
    /// `N/s`, `N/m` or `N/h`.
    Text(String),
    /// A rate and the most calls allowed at once.
    WithBurst {
        /// `N/s`, `N/m` or `N/h`.
        rate: String,
        /// Calls allowed at once (default: the rate's count).
        burst: u32,
    },
}

/// A validated rate: `count` calls per `period`, at most `burst` at once (GCRA: one call's
/// worth of capacity comes back every `period / count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Calls per period.
    pub count: NonZeroU32,
    /// The period.
    pub period: Duration,
    /// Calls allowed at once.
    pub burst: NonZeroU32,
}

impl Rate {
    /// Parses a rate.
    ///
    /// # Errors
    /// A message naming what is wrong: not `N/unit`, an unknown unit, a count or burst of zero.
    pub fn parse(raw: &RawRate) -> Result<Self, String> {
        let (text, burst) = match raw {
            RawRate::Text(text) => (text.as_str(), None),
            RawRate::WithBurst { rate, burst } => (rate.as_str(), Some(*burst)),
        };
        let bad = || format!("{text:?} is not a rate such as 600/m (units s, m, h)");
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let count = NonZeroU32::new(count).ok_or_else(bad)?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let burst = match burst {
            None => count,
            Some(b) => NonZeroU32::new(b).ok_or_else(|| "burst must be at least 1".to_string())?,
        };
        Ok(Self {
            count,
            period,
            burst,
        })
    }

    /// The governor quota: one cell every `period / count`, `burst` cells at most.
    pub fn quota(&self) -> governor::Quota {
        let interval = (self.period / self.count.get()).max(Duration::from_nanos(1));
        governor::Quota::with_period(interval)
            .unwrap_or_else(|| governor::Quota::per_second(self.count))
            .allow_burst(self.burst)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)?;
        if self.burst != self.count {
            write!(f, " (burst {})", self.burst)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_refuses_the_rest() {
        let r = Rate::parse(&RawRate::Text("600/m".into())).unwrap();
        assert_eq!(
            (r.count.get(), r.period.as_secs(), r.burst.get()),
            (600, 60, 600)
        );
        let r = Rate::parse(&RawRate::WithBurst {
            rate: "10/s".into(),
            burst: 3,
        })
        .unwrap();
        assert_eq!((r.count.get(), r.burst.get()), (10, 3));
        assert_eq!(r.to_string(), "10/s (burst 3)");
        for bad in ["", "lots", "0/s", "5/d", "5", "x/m"] {
            assert!(Rate::parse(&RawRate::Text(bad.into())).is_err(), "{bad}");
        }
        let zero = RawRate::WithBurst {
            rate: "1/s".into(),
            burst: 0,
        };
        assert!(Rate::parse(&zero).is_err());
    }
}
