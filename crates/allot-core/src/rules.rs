//! The rules of change control: every refusal `plan` can make, one variant each, with the
//! wire id that `plan --format json` (`refusals[].rule`) and the HTTP API report. The list is
//! also the table in docs/config.md ("Lifecycle and change control"); a test makes every rule
//! fire (`crates/allot-core/tests/it/coordination.rs`, `every_rule_fires`).

/// A change-control rule. Refused unless forced (`--force --reason`, recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The change would move units of a running experiment (the exact share is in `impact`):
    /// its split, its buckets, its unit type, prerequisites, or a targeting change (its own or
    /// through a segment) that is not provably a widening.
    MovesUnits,
    /// A running allocation would shrink.
    NoShrink,
    /// A running experiment would join or leave a group, or change its slots.
    GroupMembershipFixed,
    /// A group's share, slots or unit type would change.
    SlotsFixed,
    /// A group whose experiments run would be deleted.
    GroupInUse,
    /// A holdout's share or unit type would change.
    HoldoutShareFixed,
    /// A holdout would be deleted, or stop applying to, while experiments it applies to run.
    HoldoutInUse,
    /// A running experiment would be removed from the file.
    RunningRemoved,
    /// An experiment would go backwards in draft → running → stopped → archived.
    Lifecycle,
    /// A unit type's `attribute` would change while experiments on it run.
    UnitTypeFixed,
    /// A new experiment, holdout or group would reuse an id that held buckets before.
    IdReused,
    /// Two running exclusive experiments share buckets on an attribute not declared `stable`.
    SharesOnMutableAttribute,
}

impl Rule {
    /// Every rule, in the order of the documentation.
    pub const ALL: [Rule; 12] = [
        Rule::MovesUnits,
        Rule::NoShrink,
        Rule::GroupMembershipFixed,
        Rule::SlotsFixed,
        Rule::GroupInUse,
        Rule::HoldoutShareFixed,
        Rule::HoldoutInUse,
        Rule::RunningRemoved,
        Rule::Lifecycle,
        Rule::UnitTypeFixed,
        Rule::IdReused,
        Rule::SharesOnMutableAttribute,
    ];

    /// The wire id (stable: clients match on it).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::MovesUnits => "moves-units",
            Rule::NoShrink => "no-shrink",
            Rule::GroupMembershipFixed => "group-membership-fixed",
            Rule::SlotsFixed => "slots-fixed",
            Rule::GroupInUse => "group-in-use",
            Rule::HoldoutShareFixed => "holdout-share-fixed",
            Rule::HoldoutInUse => "holdout-in-use",
            Rule::RunningRemoved => "running-removed",
            Rule::Lifecycle => "lifecycle",
            Rule::UnitTypeFixed => "unit-type-fixed",
            Rule::IdReused => "id-reused",
            Rule::SharesOnMutableAttribute => "shares-on-mutable-attribute",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
