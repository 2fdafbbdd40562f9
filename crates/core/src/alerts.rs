//! The alerts file (`ALERTS_FILE`, TOML, described in docs/alerts.md): where notifications go
//! (named webhooks, an MQTT topic) and the rules, each one condition on one panel or virtual
//! meter — OFFLINE for too long, power above a limit (for a while, in a tariff window), today's
//! usage or cost above a budget. The file is read whole and checked against the meters file
//! and the tariffs before the server starts, every error naming its line and field.
//!
//! Each rule is a small state machine ([`Rule::evaluate`]), free of I/O and of any clock: the
//! caller passes what it saw of the meter ([`Observation`]), the rule's state from the previous
//! evaluation ([`RuleState`], which it persists) and `now`, and gets the next state and, when
//! the rule starts or stops firing, one [`Event`]. Firings and resolutions strictly alternate,
//! starting with a firing, whatever the observations.
//!
//! Thresholds are read exactly from the text, as the tariff file reads its numbers: the power
//! limit is kept as an exact decimal ([`Price`]), the usage budget as a [`Usage`] (nano-kWh) and
//! the cost budget as a [`Cost`] (hundredths), so that the budget comparisons are exact.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

use crate::cost::{round_to, Cost, Price};
use crate::meters::Meters;
use crate::panel::PanelId;
use crate::tariff::Tariffs;
use crate::toml_file::{self, get, join, LocatedError, Value};
use crate::usage::Usage;

/// Longest accepted rule or webhook name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The longest `offline_for_minutes`: a week.
pub const MAX_OFFLINE_MINUTES: u32 = 7 * 24 * 60;

/// The longest `for_minutes`: a day.
pub const MAX_FOR_MINUTES: u32 = 24 * 60;

/// The name of the MQTT target in `notify`.
pub const MQTT_TARGET: &str = "mqtt";

const TOP_KEYS: &[&str] = &["webhooks", "mqtt", "rules"];
const WEBHOOK_KEYS: &[&str] = &["url", "secret_env"];
const MQTT_KEYS: &[&str] = &["topic_prefix"];
const CONDITION_KEYS: &[&str] = &[
    "offline_for_minutes",
    "power_above_kw",
    "today_kwh_above",
    "today_cost_above",
];
const RULE_KEYS: &[&str] = &[
    "name",
    "meter",
    "offline_for_minutes",
    "power_above_kw",
    "for_minutes",
    "in_window",
    "today_kwh_above",
    "today_cost_above",
    "notify",
];

/// Decimal places of a [`Usage`]: it counts nano-kWh.
const USAGE_DECIMALS: i32 = 9;
/// Decimal places of a [`Cost`]: it counts hundredths.
const COST_DECIMALS: i32 = 2;

/// The alerts file, read and checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alerts {
    /// In the order written.
    pub webhooks: Vec<Webhook>,
    pub mqtt: Option<MqttTarget>,
    /// In the order written.
    pub rules: Vec<Rule>,
}

/// A receiver of notifications by HTTP `POST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub name: String,
    /// An `http://` or `https://` URL with a host, as written.
    pub url: String,
    /// The environment variable holding the HMAC-SHA256 key; unsigned without it.
    pub secret_env: Option<String>,
}

/// Publishing each rule's events to `<topic_prefix>/alerts/<rule>`, QoS 1, retained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MqttTarget {
    /// `None`: the caller's `MQTT_TOPIC_PREFIX`.
    pub topic_prefix: Option<String>,
}

/// One rule: a condition on one meter and where its events go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique in the file; `[A-Za-z0-9_.-]{1,64}` (it is an MQTT topic level).
    pub name: String,
    /// A panel or a virtual meter.
    pub meter: String,
    pub condition: Condition,
    /// Resolved: every configured target (webhooks in file order, then MQTT) when the file
    /// does not say; may be empty (the alert is then only listed by the API).
    pub notify: Vec<Target>,
}

/// What a rule watches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// No reading for more than `minutes` (1 to a week), or none at all.
    Offline { minutes: u32 },
    /// The latest power above `kw` (an exact decimal, ≥ 0) at every evaluation for
    /// `for_minutes` (0 to a day: at once), and, with a `window`, while that window of the
    /// meter's tariff is in force.
    PowerAbove {
        kw: Price,
        for_minutes: u32,
        window: Option<String>,
    },
    /// Today's usage above `limit`. A limit written with more than 9 decimals is kept rounded
    /// down to the nano-kWh, which changes no comparison (usage is whole nano-kWh).
    TodayUsageAbove { limit: Usage },
    /// Today's cost above `limit`, in the tariff file's currency. A limit written with more
    /// than 2 decimals is kept rounded down to the hundredth, which changes no comparison.
    TodayCostAbove { limit: Cost },
}

impl Condition {
    /// The threshold as a number, for display: minutes, kW, kWh or currency.
    pub fn threshold(&self) -> f64 {
        match self {
            Condition::Offline { minutes } => f64::from(*minutes),
            Condition::PowerAbove { kw, .. } => kw.to_f64(),
            Condition::TodayUsageAbove { limit } => limit.kwh(),
            Condition::TodayCostAbove { limit } => limit.to_f64(),
        }
    }

    /// How long the condition must hold before the rule fires (only a power rule waits).
    fn wait(&self) -> Duration {
        match self {
            Condition::PowerAbove { for_minutes, .. } => Duration::minutes(i64::from(*for_minutes)),
            _ => Duration::zero(),
        }
    }
}

/// Where a rule's events go.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// The webhook of this name.
    Webhook(String),
    /// The `[mqtt]` topic.
    Mqtt,
}

impl Target {
    /// The target as `notify` names it: the webhook's name, or `mqtt`.
    pub fn name(&self) -> &str {
        match self {
            Target::Webhook(name) => name,
            Target::Mqtt => MQTT_TARGET,
        }
    }
}

/// Why an alerts file was refused: where, which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path} line {line}, {field}: {message}")]
pub struct AlertsFileError {
    pub path: String,
    pub line: usize,
    /// The field's path in the file, as `rules[2].power_above_kw` (rules counted from 0).
    pub field: String,
    pub message: String,
}

impl LocatedError for AlertsFileError {
    fn located(path: String, line: usize, field: String, message: String) -> Self {
        AlertsFileError {
            path,
            line,
            field,
            message,
        }
    }
}

type Reader<'a> = toml_file::Reader<'a, AlertsFileError>;

impl Alerts {
    /// Reads an alerts file's text; `path` only names it in errors. Every rule's meter must be
    /// a panel or a virtual meter of `meters` (any panel id when `meters` declares no panels),
    /// and every `in_window` a window of that meter's tariff in `tariffs`.
    pub fn parse(
        text: &str,
        path: &str,
        meters: &Meters,
        tariffs: &Tariffs,
    ) -> Result<Alerts, AlertsFileError> {
        parse(text, path, meters, tariffs)
    }

    /// The rule called `name`.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

fn parse(
    text: &str,
    path: &str,
    meters: &Meters,
    tariffs: &Tariffs,
) -> Result<Alerts, AlertsFileError> {
    let reader = Reader::new(text, path);
    let root = reader.document()?;
    let top = reader.table(&root, "", TOP_KEYS, "key")?;

    let mut webhooks = Vec::new();
    if let Some(value) = get(top, "webhooks") {
        for (name, value) in in_file_order(reader.map(value, "webhooks")?) {
            let field = join("webhooks", name.get_ref());
            webhooks.push(read_webhook(&reader, name, value, &field)?);
        }
    }

    let mqtt = match get(top, "mqtt") {
        None => None,
        Some(value) => {
            let table = reader.table(value, "mqtt", MQTT_KEYS, "key")?;
            let topic_prefix = match get(table, "topic_prefix") {
                None => None,
                Some(v) => {
                    let prefix = reader.string(v, "mqtt.topic_prefix")?;
                    if let Some(problem) = topic_prefix_problem(&prefix) {
                        return Err(reader.error(v.span().start, "mqtt.topic_prefix", problem));
                    }
                    Some(prefix)
                }
            };
            Some(MqttTarget { topic_prefix })
        }
    };

    let targets = Targets {
        webhooks: webhooks.iter().map(|w| w.name.as_str()).collect(),
        mqtt: mqtt.is_some(),
    };
    let mut rules: Vec<(usize, Rule)> = Vec::new();
    if let Some(value) = get(top, "rules") {
        let Some(items) = value.get_ref().as_array() else {
            return Err(reader.error(
                value.span().start,
                "rules",
                format!(
                    "must be an array of tables, not {}: write each rule under [[rules]]",
                    value.get_ref().type_str()
                ),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let field = format!("rules[{i}]");
            let (name_at, rule) = read_rule(&reader, item, &field, meters, tariffs, &targets)?;
            if let Some((j, (other_at, _))) = rules
                .iter()
                .enumerate()
                .find(|(_, (_, r))| r.name == rule.name)
            {
                return Err(reader.error(
                    name_at,
                    &join(&field, "name"),
                    format!(
                        "{:?} is already the name of rules[{j}] (line {}): rule names must be \
                         unique",
                        rule.name,
                        reader.line(*other_at)
                    ),
                ));
            }
            rules.push((name_at, rule));
        }
    }

    Ok(Alerts {
        webhooks,
        mqtt,
        rules: rules.into_iter().map(|(_, r)| r).collect(),
    })
}

/// The targets the file configures, for checking `notify`.
struct Targets<'a> {
    webhooks: Vec<&'a str>,
    mqtt: bool,
}

impl Targets<'_> {
    fn all(&self) -> Vec<Target> {
        let mut all: Vec<Target> = self
            .webhooks
            .iter()
            .map(|w| Target::Webhook((*w).to_owned()))
            .collect();
        if self.mqtt {
            all.push(Target::Mqtt);
        }
        all
    }
}

type Entry<'v, 'i> = (&'v toml::Spanned<toml::de::DeString<'i>>, &'v Value<'i>);

/// The entries of `table` in the order they were written.
fn in_file_order<'v, 'i>(table: &'v DeTable<'i>) -> Vec<Entry<'v, 'i>> {
    let mut entries: Vec<Entry<'v, 'i>> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// Why `name` is not a rule or webhook name (`[A-Za-z0-9_.-]{1,64}`), if it is not one.
fn name_problem(name: &str) -> Option<String> {
    const ALLOWED: &str = "a name is 1 to 64 letters, digits, '_', '.' or '-' (it is an MQTT \
                           topic level)";
    if name.is_empty() {
        return Some(format!("must not be empty: {ALLOWED}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Some(format!("{name:?} contains {bad:?}: {ALLOWED}"));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Some(format!("{name:?} is {chars} characters long: {ALLOWED}"));
    }
    None
}

/// Why `prefix` cannot start an MQTT topic to publish to, if it cannot (the rules of
/// `MQTT_TOPIC_PREFIX`).
fn topic_prefix_problem(prefix: &str) -> Option<String> {
    if prefix.contains(['#', '+', '\0']) {
        return Some(format!(
            "{prefix:?} must not contain MQTT wildcards (# or +)"
        ));
    }
    if prefix.starts_with('/') || prefix.ends_with('/') {
        return Some(format!("{prefix:?} must not start or end with '/'"));
    }
    None
}

/// Why `url` is not an `http://` or `https://` URL with a host, if it is not one: the scheme,
/// a host (a name, an IPv4 address or a bracketed IPv6 address), a port of digits below 65536,
/// and no whitespace or control character anywhere.
fn url_problem(url: &str) -> Option<String> {
    const WANTED: &str = "an http:// or https:// URL with a host";
    if let Some(bad) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("{url:?} contains {bad:?}: it must be {WANTED}"));
    }
    let lower = url.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://"]
        .iter()
        .find(|scheme| lower.starts_with(*scheme))
        .map(|scheme| &url[scheme.len()..])
    else {
        return Some(format!("{url:?} is not {WANTED}"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((address, after)) => {
                if address.is_empty()
                    || !address
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
                {
                    return Some(format!(
                        "{url:?} has a malformed IPv6 address: it must be {WANTED}"
                    ));
                }
                match after {
                    "" => (address, None),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (address, Some(port)),
                        None => {
                            return Some(format!(
                                "{url:?} has a malformed host: it must be {WANTED}"
                            ))
                        }
                    },
                }
            }
            None => {
                return Some(format!(
                    "{url:?} has a malformed IPv6 address: it must be {WANTED}"
                ))
            }
        }
    } else {
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        };
        if let Some(bad) = host
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%')))
        {
            return Some(format!(
                "{url:?} has {bad:?} in its host: it must be {WANTED}"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Some(format!("{url:?} has no host: it must be {WANTED}"));
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| p <= 65535);
        if !valid {
            return Some(format!(
                "{url:?} has the port {port:?}: a port is a number from 0 to 65535"
            ));
        }
    }
    None
}

fn read_webhook(
    reader: &Reader<'_>,
    name: &toml::Spanned<toml::de::DeString<'_>>,
    value: &Value<'_>,
    field: &str,
) -> Result<Webhook, AlertsFileError> {
    let name_text = name.get_ref().to_string();
    if let Some(problem) = name_problem(&name_text) {
        return Err(reader.error(name.span().start, field, problem));
    }
    if name_text == MQTT_TARGET {
        return Err(reader.error(
            name.span().start,
            field,
            "\"mqtt\" names the [mqtt] target in notify: give the webhook another name",
        ));
    }
    let table = reader.table(value, field, WEBHOOK_KEYS, "key")?;
    let url_field = join(field, "url");
    let url = match get(table, "url") {
        Some(v) => {
            let url = reader.string(v, &url_field)?;
            if let Some(problem) = url_problem(&url) {
                return Err(reader.error(v.span().start, &url_field, problem));
            }
            url
        }
        None => {
            return Err(reader.error(
                value.span().start,
                &url_field,
                "is missing: where to POST notifications (e.g. url = \
                 \"https://hooks.example.com/energy\")",
            ))
        }
    };
    let secret_env = match get(table, "secret_env") {
        None => None,
        Some(v) => {
            let secret_field = join(field, "secret_env");
            let variable = reader.string(v, &secret_field)?;
            if !is_variable_name(&variable) {
                return Err(reader.error(
                    v.span().start,
                    &secret_field,
                    format!(
                        "{variable:?} is not an environment variable name: capital letters, \
                         digits and '_', not starting with a digit ([A-Z_][A-Z0-9_]*); the \
                         secret itself is never written in this file"
                    ),
                ));
            }
            Some(variable)
        }
    };
    Ok(Webhook {
        name: name_text,
        url,
        secret_env,
    })
}

/// `[A-Z_][A-Z0-9_]*`.
fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A whole number from `min` to `max`, described as `what` in errors.
fn whole_number(
    reader: &Reader<'_>,
    value: &Value<'_>,
    field: &str,
    min: u32,
    max: u32,
    what: &str,
) -> Result<u32, AlertsFileError> {
    let written = match value.get_ref() {
        DeValue::Integer(i) => {
            let number = i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok();
            match number.and_then(|n| u32::try_from(n).ok()) {
                Some(n) if (min..=max).contains(&n) => return Ok(n),
                _ => i.to_string(),
            }
        }
        DeValue::Float(f) => f.as_str().to_owned(),
        other => other.type_str().to_owned(),
    };
    Err(reader.error(
        value.span().start,
        field,
        format!("must be a whole number of minutes from {min} to {max} ({what}), not {written}"),
    ))
}

/// A threshold: a decimal ≥ 0 read exactly from the text as written, as the tariff file reads
/// its rates ([`toml_file::Reader::decimal`]).
fn threshold(
    reader: &Reader<'_>,
    value: &Value<'_>,
    field: &str,
) -> Result<Price, AlertsFileError> {
    reader.decimal(value, field, "a threshold must be 0 or more")
}

/// `price × 10^decimals`, rounded down to a whole number, saturating at `i128::MAX` (no figure
/// of that many units exists, so a limit beyond it is never passed, like the limit written).
fn whole_units(price: Price, decimals: i32) -> i128 {
    let exponent = i64::from(price.exponent()) + i64::from(decimals);
    let mantissa = price.mantissa();
    let units = if exponent >= 0 {
        u32::try_from(exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
            .and_then(|scale| mantissa.checked_mul(scale))
    } else {
        match u32::try_from(exponent.unsigned_abs())
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
        {
            Some(scale) => Some(mantissa / scale),
            None => Some(0), // 10^39 and more: above any u128 mantissa
        }
    };
    units
        .and_then(|u| i128::try_from(u).ok())
        .unwrap_or(i128::MAX)
}

/// The names of the windows of `plan`'s versions, each once, in the order first written.
fn window_names(tariffs: &Tariffs, plan: usize) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for version in tariffs.plans.get(plan).map_or(&[][..], |p| &p.versions[..]) {
        for window in &version.windows {
            if !names.contains(&window.name.as_str()) {
                names.push(&window.name);
            }
        }
    }
    names
}

/// Why `meter` is neither a panel nor a virtual meter of `meters`, if it is not one.
fn meter_problem(meters: &Meters, meter: &str) -> Option<String> {
    if meters.get(meter).is_some() || meters.panels().contains_key(meter) {
        return None;
    }
    if meters.panels().is_empty() {
        return PanelId::parse(meter).err().map(|e| {
            format!("{meter:?} is no virtual meter of the meters file, nor a panel: {e}")
        });
    }
    Some(format!(
        "unknown panel or virtual meter {meter:?} (declare it under [panels] or [meters] of \
         the meters file)"
    ))
}

/// Reads rule `field`; returns where its name was written, and the rule.
fn read_rule(
    reader: &Reader<'_>,
    value: &Value<'_>,
    field: &str,
    meters: &Meters,
    tariffs: &Tariffs,
    targets: &Targets<'_>,
) -> Result<(usize, Rule), AlertsFileError> {
    let table = reader.table(value, field, RULE_KEYS, "key")?;
    let at = value.span().start;
    let required = |key: &str, hint: &str| -> Result<&Value<'_>, AlertsFileError> {
        get(table, key)
            .ok_or_else(|| reader.error(at, &join(field, key), format!("is missing: {hint}")))
    };

    let name_value = required("name", "the rule's name, unique in the file")?;
    let name_field = join(field, "name");
    let name = reader.string(name_value, &name_field)?;
    if let Some(problem) = name_problem(&name) {
        return Err(reader.error(name_value.span().start, &name_field, problem));
    }

    let meter_value = required("meter", "the panel or virtual meter the rule watches")?;
    let meter_field = join(field, "meter");
    let meter = reader.string(meter_value, &meter_field)?;
    if let Some(problem) = meter_problem(meters, &meter) {
        return Err(reader.error(meter_value.span().start, &meter_field, problem));
    }

    let mut conditions = CONDITION_KEYS
        .iter()
        .filter_map(|key| get(table, key).map(|v| (*key, v)))
        .collect::<Vec<_>>();
    conditions.sort_by_key(|(_, v)| v.span().start);
    let (key, condition_value) = match conditions[..] {
        [] => {
            return Err(reader.error(
                at,
                field,
                format!(
                    "has no condition: give one of {}",
                    CONDITION_KEYS.join(", ")
                ),
            ))
        }
        [one] => one,
        [(first, _), (second, second_value), ..] => {
            return Err(reader.error(
                second_value.span().start,
                &join(field, second),
                format!(
                    "a rule has exactly one condition, and this one already has {first}: \
                     write a rule for each"
                ),
            ))
        }
    };
    for extra in ["for_minutes", "in_window"] {
        if key != "power_above_kw" {
            if let Some(v) = get(table, extra) {
                return Err(reader.error(
                    v.span().start,
                    &join(field, extra),
                    format!("only goes with power_above_kw, not with {key}"),
                ));
            }
        }
    }
    let condition_field = join(field, key);
    let condition = match key {
        "offline_for_minutes" => Condition::Offline {
            minutes: whole_number(
                reader,
                condition_value,
                &condition_field,
                1,
                MAX_OFFLINE_MINUTES,
                "a week",
            )?,
        },
        "power_above_kw" => {
            let kw = threshold(reader, condition_value, &condition_field)?;
            let for_minutes = match get(table, "for_minutes") {
                None => 0,
                Some(v) => whole_number(
                    reader,
                    v,
                    &join(field, "for_minutes"),
                    0,
                    MAX_FOR_MINUTES,
                    "a day",
                )?,
            };
            let window = match get(table, "in_window") {
                None => None,
                Some(v) => {
                    let window_field = join(field, "in_window");
                    let window = reader.string(v, &window_field)?;
                    let plan = tariffs.plan_of(&meter);
                    let names = window_names(tariffs, plan);
                    if !names.contains(&window.as_str()) {
                        let tariff = tariffs.plans.get(plan).map_or("", |p| p.name.as_str());
                        return Err(reader.error(
                            v.span().start,
                            &window_field,
                            format!(
                                "{window:?} is not a window of tariff {tariff:?}, the tariff of \
                                 {meter}: its windows are {}",
                                names.join(", ")
                            ),
                        ));
                    }
                    Some(window)
                }
            };
            Condition::PowerAbove {
                kw,
                for_minutes,
                window,
            }
        }
        "today_kwh_above" => Condition::TodayUsageAbove {
            limit: Usage::from_nano_kwh(whole_units(
                threshold(reader, condition_value, &condition_field)?,
                USAGE_DECIMALS,
            )),
        },
        _ => Condition::TodayCostAbove {
            limit: Cost::from_minor_units(whole_units(
                threshold(reader, condition_value, &condition_field)?,
                COST_DECIMALS,
            )),
        },
    };

    let notify = match get(table, "notify") {
        None => targets.all(),
        Some(v) => read_notify(reader, v, &join(field, "notify"), targets)?,
    };

    Ok((
        name_value.span().start,
        Rule {
            name,
            meter,
            condition,
            notify,
        },
    ))
}

fn read_notify(
    reader: &Reader<'_>,
    value: &Value<'_>,
    field: &str,
    targets: &Targets<'_>,
) -> Result<Vec<Target>, AlertsFileError> {
    let mut notify = Vec::new();
    for (i, item) in reader.array(value, field)?.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let name = reader.string(item, &item_field)?;
        let target = if name == MQTT_TARGET {
            if !targets.mqtt {
                return Err(reader.error(
                    item.span().start,
                    &item_field,
                    "\"mqtt\" needs an [mqtt] table in this file",
                ));
            }
            Target::Mqtt
        } else if targets.webhooks.contains(&name.as_str()) {
            Target::Webhook(name.clone())
        } else {
            return Err(reader.error(
                item.span().start,
                &item_field,
                unknown_target(&name, targets),
            ));
        };
        if notify.contains(&target) {
            return Err(reader.error(
                item.span().start,
                &item_field,
                format!("{name:?} is listed twice"),
            ));
        }
        notify.push(target);
    }
    Ok(notify)
}

fn unknown_target(name: &str, targets: &Targets<'_>) -> String {
    let known: Vec<String> = targets.all().iter().map(|t| t.name().to_owned()).collect();
    if known.is_empty() {
        format!(
            "unknown target {name:?}: this file configures no target (no [webhooks.NAME] and no \
             [mqtt])"
        )
    } else {
        format!(
            "unknown target {name:?} (expected one of: {})",
            known.join(", ")
        )
    }
}

/// What the evaluator saw of one meter at one evaluation (built by the caller from the API's
/// own figures). The default is a meter never seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// Seconds since the latest reading; `None`: never wrote a reading.
    pub seconds_since_last_seen: Option<i64>,
    /// The latest power (a virtual meter's: its expression over its members' latest power).
    pub power_kw: Option<f64>,
    pub today_usage: Usage,
    pub today_cost: Cost,
    /// The name of the meter's tariff window in force now.
    pub window: Option<String>,
}

/// One rule's state, persisted by the caller between evaluations and across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Whether the rule has fired and not resolved since.
    pub firing: bool,
    /// When the condition was first seen holding in the current run of evaluations where it
    /// holds; `None` while it does not hold.
    pub pending_since: Option<DateTime<Utc>>,
    /// When the rule fired, while it fires.
    pub fired_at: Option<DateTime<Utc>>,
    /// The last observed value the condition compares (minutes since the latest reading, kW,
    /// kWh or currency); `None` when there was none (never seen, no power or not a number).
    pub value: Option<f64>,
}

/// Whether a rule started or stopped firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Fired,
    Resolved,
}

impl Transition {
    /// `fired` or `resolved`, as in event ids.
    pub fn name(self) -> &'static str {
        match self {
            Transition::Fired => "fired",
            Transition::Resolved => "resolved",
        }
    }
}

/// A rule starting or stopping to fire.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub rule: String,
    pub meter: String,
    pub transition: Transition,
    /// The evaluation that saw it.
    pub at: DateTime<Utc>,
    /// The value compared (as [`RuleState::value`]); 0 when there was none, which the message
    /// then explains. Always finite.
    pub value: f64,
    /// [`Condition::threshold`].
    pub threshold: f64,
    /// One sentence for people, as `PANEL_MAIN has been OFFLINE for 12 min (limit 10 min)`.
    pub message: String,
    /// `<rule>:<fired_at, RFC 3339>:<fired|resolved>`: the same for the same event however
    /// often it is sent, different for its firing and its resolution; receivers deduplicate
    /// on it.
    pub id: String,
}

/// What a rule makes of one observation.
struct Look {
    holds: bool,
    /// As [`RuleState::value`].
    value: Option<f64>,
}

impl Rule {
    /// Whether the condition holds for `seen` (ignoring any `for_minutes` wait).
    pub fn holds(&self, seen: &Observation) -> bool {
        self.look(seen).holds
    }

    fn look(&self, seen: &Observation) -> Look {
        match &self.condition {
            Condition::Offline { minutes } => match seen.seconds_since_last_seen {
                None => Look {
                    holds: true,
                    value: None,
                },
                Some(seconds) => Look {
                    holds: seconds > i64::from(*minutes) * 60,
                    value: Some(seconds.max(0) as f64 / 60.0),
                },
            },
            Condition::PowerAbove { kw, window, .. } => {
                let power = seen.power_kw.filter(|p| p.is_finite());
                let in_window = window.is_none() || seen.window == *window;
                Look {
                    // Compared as f64: the power is a float to begin with, and the nearest
                    // f64 of the threshold is what a reading written as the same decimal
                    // parses to, so a reading equal to the threshold is not above it.
                    holds: in_window && power.is_some_and(|p| p > kw.to_f64()),
                    value: power,
                }
            }
            Condition::TodayUsageAbove { limit } => Look {
                holds: seen.today_usage > *limit,
                value: Some(seen.today_usage.kwh()),
            },
            Condition::TodayCostAbove { limit } => Look {
                holds: seen.today_cost > *limit,
                value: Some(seen.today_cost.to_f64()),
            },
        }
    }

    /// One evaluation: the next state, and the event when the rule fires or resolves.
    ///
    /// The rule fires once when its condition holds (a power rule with `for_minutes`: when it
    /// has held at every evaluation since `pending_since` for at least that long), produces
    /// nothing more while the condition keeps holding, and resolves once at the first
    /// evaluation where it does not hold. `state` is what the previous evaluation returned
    /// (or the persisted state after a restart: a rule still firing is not announced again).
    /// Never panics, whatever the inputs.
    pub fn evaluate(
        &self,
        state: &RuleState,
        seen: &Observation,
        now: DateTime<Utc>,
    ) -> (RuleState, Option<Event>) {
        let look = self.look(seen);
        let mut next = RuleState {
            value: look.value,
            ..state.clone()
        };
        if !look.holds {
            next.pending_since = None;
            if !state.firing {
                return (next, None);
            }
            let fired_at = state.fired_at.unwrap_or(now);
            next.firing = false;
            next.fired_at = None;
            let event = self.event(Transition::Resolved, fired_at, now, seen, &look);
            return (next, Some(event));
        }
        // A start in the future (a clock set back) counts from now.
        let since = state.pending_since.filter(|p| *p <= now).unwrap_or(now);
        next.pending_since = Some(since);
        if state.firing || now.signed_duration_since(since) < self.condition.wait() {
            return (next, None);
        }
        next.firing = true;
        next.fired_at = Some(now);
        let event = self.event(Transition::Fired, now, now, seen, &look);
        (next, Some(event))
    }

    fn event(
        &self,
        transition: Transition,
        fired_at: DateTime<Utc>,
        now: DateTime<Utc>,
        seen: &Observation,
        look: &Look,
    ) -> Event {
        Event {
            rule: self.name.clone(),
            meter: self.meter.clone(),
            transition,
            at: now,
            value: look.value.filter(|v| v.is_finite()).unwrap_or(0.0),
            threshold: self.condition.threshold(),
            message: self.message(transition, seen),
            id: event_id(&self.name, fired_at, transition),
        }
    }

    /// The event's sentence.
    fn message(&self, transition: Transition, seen: &Observation) -> String {
        let meter = &self.meter;
        let fired = transition == Transition::Fired;
        match &self.condition {
            Condition::Offline { minutes } => match (seen.seconds_since_last_seen, fired) {
                (None, true) => {
                    format!("{meter} is OFFLINE: no reading yet (limit {minutes} min)")
                }
                (None, false) => format!("{meter} is back ONLINE (limit {minutes} min)"),
                (Some(seconds), true) => format!(
                    "{meter} has been OFFLINE for {} min (limit {minutes} min)",
                    seconds.max(0) / 60
                ),
                (Some(seconds), false) => format!(
                    "{meter} is back ONLINE: last reading {} min ago (limit {minutes} min)",
                    seconds.max(0) / 60
                ),
            },
            Condition::PowerAbove {
                kw,
                for_minutes,
                window,
            } => {
                let power = seen.power_kw.filter(|p| p.is_finite());
                if fired {
                    let mut text = format!(
                        "{meter}: power {} kW above {kw} kW",
                        shown(power.unwrap_or(0.0))
                    );
                    if *for_minutes > 0 {
                        let _ = write!(text, " for {for_minutes} min");
                    }
                    if let Some(window) = window {
                        let _ = write!(text, " in window {window}");
                    }
                    text
                } else {
                    match (power, window) {
                        (None, _) => {
                            format!("{meter}: no power reading, so no longer above {kw} kW")
                        }
                        (Some(p), Some(window))
                            if seen.window.as_deref() != Some(window.as_str()) =>
                        {
                            format!(
                                "{meter}: window {window} is over (power {} kW, limit {kw} kW)",
                                shown(p)
                            )
                        }
                        (Some(p), _) => {
                            format!("{meter}: power {} kW back below {kw} kW", shown(p))
                        }
                    }
                }
            }
            Condition::TodayUsageAbove { limit } => format!(
                "{meter}: today's usage {} kWh {} {} kWh",
                shown(seen.today_usage.kwh_rounded()),
                if fired { "above" } else { "back below" },
                exact(limit.nano_kwh(), USAGE_DECIMALS)
            ),
            Condition::TodayCostAbove { limit } => format!(
                "{meter}: today's cost {} {} {}",
                money(seen.today_cost),
                if fired { "above" } else { "back below" },
                money(*limit)
            ),
        }
    }
}

/// The id of an event: `<rule>:<fired_at, RFC 3339, UTC as Z>:<fired|resolved>`.
pub fn event_id(rule: &str, fired_at: DateTime<Utc>, transition: Transition) -> String {
    format!(
        "{rule}:{}:{}",
        fired_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        transition.name()
    )
}

/// A float figure for a sentence: 3 decimals at most, no `-0`.
fn shown(value: f64) -> String {
    let rounded = round_to(value, 3);
    if rounded == 0.0 || !rounded.is_finite() {
        "0".to_owned()
    } else {
        rounded.to_string()
    }
}

/// `units × 10^-decimals` exactly, without trailing zeros.
fn exact(units: i128, decimals: i32) -> String {
    let magnitude = Price::new(units.unsigned_abs(), -decimals).to_string();
    if units < 0 {
        format!("-{magnitude}")
    } else {
        magnitude
    }
}

/// A cost for a sentence: `3000000`, `12.50`.
fn money(cost: Cost) -> String {
    if cost.minor_units() % 100 == 0 {
        cost.with_decimals(0)
    } else {
        cost.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn the_example_files_of_the_docs_are_valid() {
        let meters = Meters::parse(
            include_str!("../../../docs/meters/example.toml"),
            "meters/example.toml",
        )
        .unwrap();
        assert_eq!(meters.virtual_meters().count(), 2);
        let tariffs = Tariffs::flat(crate::Price::new(1500, 0), "IDR");
        let alerts = Alerts::parse(
            include_str!("../../../docs/alerts/example.toml"),
            "alerts/example.toml",
            &meters,
            &tariffs,
        )
        .unwrap();
        assert_eq!(alerts.rules.len(), 4);
    }

    const METERS: &str = r#"[panels.PANEL_MAIN]
[panels.PANEL_1]
[panels.PANEL_2]
[panels.PANEL_FLAT]

[meters.TOWER_A]
expression = "PANEL_1 + PANEL_2"
"#;

    /// Time of use with a second version that adds a window; PANEL_FLAT on a flat tariff.
    const TARIFFS: &str = r#"currency = "IDR"
decimals = 0
default_tariff = "pln"

[[tariffs.pln.versions]]
valid_from = "2026-01-01"
windows = [
  { name = "LWBP", rate = 1035.78, every_day = ["00:00-17:00", "22:00-24:00"] },
  { name = "WBP", rate = 1553.67, every_day = ["17:00-22:00"] },
]

[[tariffs.pln.versions]]
valid_from = "2027-01-01"
windows = [
  { name = "LWBP", rate = 1035.78, every_day = ["00:00-17:00", "22:00-24:00"] },
  { name = "SHOULDER", rate = 1200, every_day = ["17:00-18:00"] },
  { name = "WBP", rate = 1553.67, every_day = ["18:00-22:00"] },
]

[[tariffs.flat.versions]]
valid_from = "2026-01-01"
windows = [{ name = "all day", rate = 1444.70, every_day = ["00:00-24:00"] }]

[panels.PANEL_FLAT]
tariff = "flat"
"#;

    /// The format's example, numbered: the tests below refer to its lines.
    const EXAMPLE: &str = r#"# Where notifications go.
[webhooks.ops]
url = "https://hooks.example.com/energy"
secret_env = "OPS_WEBHOOK_SECRET"

[webhooks.pager]
url = "http://10.0.0.7:8080/hook"

[mqtt]
topic_prefix = "DATA/PM"

[[rules]]
name = "main-offline"
meter = "PANEL_MAIN"
offline_for_minutes = 10

[[rules]]
name = "main-overload"
meter = "PANEL_MAIN"
power_above_kw = 150
for_minutes = 5

[[rules]]
name = "tower-budget"
meter = "TOWER_A"
today_kwh_above = 2000.5

[[rules]]
name = "tower-cost"
meter = "TOWER_A"
today_cost_above = "3000000"

[[rules]]
name = "peak-load"
meter = "TOWER_A"
power_above_kw = 100.25
in_window = "WBP"
for_minutes = 0
notify = ["ops"]
"#;

    fn meters() -> Meters {
        Meters::parse(METERS, "m.toml").unwrap()
    }

    fn tariffs() -> Tariffs {
        Tariffs::parse(TARIFFS, "t.toml").unwrap()
    }

    fn parse(text: &str) -> Result<Alerts, AlertsFileError> {
        Alerts::parse(text, "a.toml", &meters(), &tariffs())
    }

    fn error(text: &str) -> AlertsFileError {
        parse(text).expect_err("the file was accepted")
    }

    /// The example with `from` (which must be in it) replaced by `to`.
    fn example_with(from: &str, to: &str) -> String {
        assert!(EXAMPLE.contains(from), "{from:?} is not in the example");
        EXAMPLE.replacen(from, to, 1)
    }

    // ---- The file ----

    #[test]
    fn the_example_is_read_whole_and_exactly() {
        let every = vec![
            Target::Webhook("ops".into()),
            Target::Webhook("pager".into()),
            Target::Mqtt,
        ];
        let rule = |name: &str, meter: &str, condition, notify: &Vec<Target>| Rule {
            name: name.into(),
            meter: meter.into(),
            condition,
            notify: notify.clone(),
        };
        let expected = Alerts {
            webhooks: vec![
                Webhook {
                    name: "ops".into(),
                    url: "https://hooks.example.com/energy".into(),
                    secret_env: Some("OPS_WEBHOOK_SECRET".into()),
                },
                Webhook {
                    name: "pager".into(),
                    url: "http://10.0.0.7:8080/hook".into(),
                    secret_env: None,
                },
            ],
            mqtt: Some(MqttTarget {
                topic_prefix: Some("DATA/PM".into()),
            }),
            rules: vec![
                rule(
                    "main-offline",
                    "PANEL_MAIN",
                    Condition::Offline { minutes: 10 },
                    &every,
                ),
                rule(
                    "main-overload",
                    "PANEL_MAIN",
                    Condition::PowerAbove {
                        kw: Price::new(150, 0),
                        for_minutes: 5,
                        window: None,
                    },
                    &every,
                ),
                rule(
                    "tower-budget",
                    "TOWER_A",
                    Condition::TodayUsageAbove {
                        limit: Usage::from_nano_kwh(2_000_500_000_000),
                    },
                    &every,
                ),
                rule(
                    "tower-cost",
                    "TOWER_A",
                    Condition::TodayCostAbove {
                        limit: Cost::from_minor_units(300_000_000),
                    },
                    &every,
                ),
                rule(
                    "peak-load",
                    "TOWER_A",
                    Condition::PowerAbove {
                        kw: Price::new(10025, -2),
                        for_minutes: 0,
                        window: Some("WBP".into()),
                    },
                    &vec![Target::Webhook("ops".into())],
                ),
            ],
        };
        assert_eq!(parse(EXAMPLE).unwrap(), expected);
    }

    #[test]
    fn an_empty_file_has_no_rules_and_no_targets() {
        assert_eq!(parse("").unwrap(), Alerts::default());
        assert_eq!(parse("# nothing yet\n").unwrap(), Alerts::default());
    }

    #[test]
    fn notify_defaults_to_every_configured_target_and_may_be_empty() {
        let text = "[mqtt]\n[[rules]]\nname = \"r\"\nmeter = \"PANEL_MAIN\"\n\
                    offline_for_minutes = 1\n";
        let alerts = parse(text).unwrap();
        assert_eq!(alerts.mqtt, Some(MqttTarget { topic_prefix: None }));
        assert_eq!(alerts.rules[0].notify, vec![Target::Mqtt]);

        let none = "[[rules]]\nname = \"r\"\nmeter = \"PANEL_MAIN\"\noffline_for_minutes = 1\n";
        assert_eq!(parse(none).unwrap().rules[0].notify, vec![]);

        let silenced = example_with("notify = [\"ops\"]", "notify = []");
        assert_eq!(parse(&silenced).unwrap().rules[4].notify, vec![]);
    }

    #[test]
    fn thresholds_are_read_exactly_and_budgets_compare_in_whole_units() {
        let read = |condition: &str| {
            let text = format!("[[rules]]\nname = \"r\"\nmeter = \"PANEL_MAIN\"\n{condition}\n");
            parse(&text).unwrap().rules.remove(0).condition
        };
        assert_eq!(
            read("power_above_kw = 0.1"),
            Condition::PowerAbove {
                kw: Price::new(1, -1),
                for_minutes: 0,
                window: None
            }
        );
        assert_eq!(
            read("power_above_kw = \" 1000 \""),
            read("power_above_kw = 1_000")
        );
        // 0.58 kWh exactly, not 0.57999…
        assert_eq!(
            read("today_kwh_above = 0.58"),
            Condition::TodayUsageAbove {
                limit: Usage::from_nano_kwh(580_000_000)
            }
        );
        // Beyond the nano-kWh: rounded down, which changes no comparison of whole nano-kWh.
        assert_eq!(
            read("today_kwh_above = \"1.0000000019\""),
            Condition::TodayUsageAbove {
                limit: Usage::from_nano_kwh(1_000_000_001)
            }
        );
        assert_eq!(
            read("today_cost_above = 12.345"),
            Condition::TodayCostAbove {
                limit: Cost::from_minor_units(1234)
            }
        );
        // Too large for any figure: never passed.
        assert_eq!(
            read("today_kwh_above = 1e300"),
            Condition::TodayUsageAbove {
                limit: Usage::from_nano_kwh(i128::MAX)
            }
        );
        assert_eq!(
            read("today_cost_above = \"1e-300\""),
            Condition::TodayCostAbove { limit: Cost::ZERO }
        );
    }

    #[test]
    fn a_window_of_any_version_of_the_meters_tariff_is_accepted() {
        let shoulder = example_with("in_window = \"WBP\"", "in_window = \"SHOULDER\"");
        assert!(parse(&shoulder).is_ok());
    }

    #[test]
    fn without_declared_panels_any_panel_id_is_a_meter() {
        let no_panels = Meters::default();
        let text = "[[rules]]\nname = \"r\"\nmeter = \"ANY_PANEL-1\"\noffline_for_minutes = 1\n";
        assert!(Alerts::parse(text, "a.toml", &no_panels, &tariffs()).is_ok());
        let bad = text.replace("ANY_PANEL-1", "ANY PANEL");
        let e = Alerts::parse(&bad, "a.toml", &no_panels, &tariffs()).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str(), e.message.as_str()),
            (
                3,
                "rules[0].meter",
                "\"ANY PANEL\" is no virtual meter of the meters file, nor a panel: panel id \
                 contains ' '; only letters, digits, '_', '.' and '-' are allowed"
            )
        );
    }

    /// Every refusal names its line and field, with its exact message.
    #[test]
    fn every_bad_file_is_refused_with_its_line_field_and_message() {
        let rule_keys = RULE_KEYS.join(", ");
        let cases: Vec<(String, usize, &str, String)> = vec![
            // Malformed thresholds.
            (
                example_with("power_above_kw = 150", "power_above_kw = \"150kW\""),
                20,
                "rules[1].power_above_kw",
                "\"150kW\" is not a decimal number".into(),
            ),
            (
                example_with("power_above_kw = 150", "power_above_kw = -150"),
                20,
                "rules[1].power_above_kw",
                "-150 is negative: a threshold must be 0 or more".into(),
            ),
            (
                example_with("power_above_kw = 150", "power_above_kw = \"NaN\""),
                20,
                "rules[1].power_above_kw",
                "\"NaN\" is not a finite number".into(),
            ),
            (
                example_with("power_above_kw = 150", "power_above_kw = nan"),
                20,
                "rules[1].power_above_kw",
                "\"nan\" is not a finite number".into(),
            ),
            (
                example_with("power_above_kw = 150", "power_above_kw = \"inf\""),
                20,
                "rules[1].power_above_kw",
                "\"inf\" is not a finite number".into(),
            ),
            (
                example_with("power_above_kw = 150", "power_above_kw = 0x96"),
                20,
                "rules[1].power_above_kw",
                "0x96 is not a decimal number: write it in base 10".into(),
            ),
            (
                example_with("today_kwh_above = 2000.5", "today_kwh_above = -0.5"),
                26,
                "rules[2].today_kwh_above",
                "-0.5 is negative: a threshold must be 0 or more".into(),
            ),
            (
                example_with("today_kwh_above = 2000.5", "today_kwh_above = true"),
                26,
                "rules[2].today_kwh_above",
                "must be a decimal number, not boolean".into(),
            ),
            (
                example_with("\"3000000\"", "\"3 000 000\""),
                31,
                "rules[3].today_cost_above",
                "\"3 000 000\" is not a decimal number".into(),
            ),
            (
                example_with("\"3000000\"", "-3000000"),
                31,
                "rules[3].today_cost_above",
                "-3000000 is negative: a threshold must be 0 or more".into(),
            ),
            // Conditions: two, none, and the ones that only go with power_above_kw.
            (
                example_with(
                    "offline_for_minutes = 10\n",
                    "offline_for_minutes = 10\ntoday_kwh_above = 5\n",
                ),
                16,
                "rules[0].today_kwh_above",
                "a rule has exactly one condition, and this one already has \
                 offline_for_minutes: write a rule for each"
                    .into(),
            ),
            (
                example_with("offline_for_minutes = 10\n", ""),
                12,
                "rules[0]",
                "has no condition: give one of offline_for_minutes, power_above_kw, \
                 today_kwh_above, today_cost_above"
                    .into(),
            ),
            (
                example_with(
                    "offline_for_minutes = 10\n",
                    "offline_for_minutes = 10\nfor_minutes = 3\n",
                ),
                16,
                "rules[0].for_minutes",
                "only goes with power_above_kw, not with offline_for_minutes".into(),
            ),
            (
                example_with(
                    "today_kwh_above = 2000.5",
                    "today_kwh_above = 2000.5\nin_window = \"WBP\"",
                ),
                27,
                "rules[2].in_window",
                "only goes with power_above_kw, not with today_kwh_above".into(),
            ),
            // Minutes out of range.
            (
                example_with("for_minutes = 5", "for_minutes = 1441"),
                21,
                "rules[1].for_minutes",
                "must be a whole number of minutes from 0 to 1440 (a day), not 1441".into(),
            ),
            (
                example_with("for_minutes = 5", "for_minutes = -1"),
                21,
                "rules[1].for_minutes",
                "must be a whole number of minutes from 0 to 1440 (a day), not -1".into(),
            ),
            (
                example_with("for_minutes = 5", "for_minutes = 2.5"),
                21,
                "rules[1].for_minutes",
                "must be a whole number of minutes from 0 to 1440 (a day), not 2.5".into(),
            ),
            (
                example_with("offline_for_minutes = 10", "offline_for_minutes = 0"),
                15,
                "rules[0].offline_for_minutes",
                "must be a whole number of minutes from 1 to 10080 (a week), not 0".into(),
            ),
            (
                example_with("offline_for_minutes = 10", "offline_for_minutes = \"10\""),
                15,
                "rules[0].offline_for_minutes",
                "must be a whole number of minutes from 1 to 10080 (a week), not string".into(),
            ),
            // Names.
            (
                example_with("name = \"tower-cost\"", "name = \"tower-budget\""),
                29,
                "rules[3].name",
                "\"tower-budget\" is already the name of rules[2] (line 24): rule names must \
                 be unique"
                    .into(),
            ),
            (
                example_with("\"main-offline\"", "\"main offline\""),
                13,
                "rules[0].name",
                "\"main offline\" contains ' ': a name is 1 to 64 letters, digits, '_', '.' \
                 or '-' (it is an MQTT topic level)"
                    .into(),
            ),
            (
                example_with("\"main-offline\"", "\"main/offline\""),
                13,
                "rules[0].name",
                "\"main/offline\" contains '/': a name is 1 to 64 letters, digits, '_', '.' \
                 or '-' (it is an MQTT topic level)"
                    .into(),
            ),
            (
                example_with("\"main-offline\"", &format!("\"{}\"", "r".repeat(65))),
                13,
                "rules[0].name",
                format!(
                    "\"{}\" is 65 characters long: a name is 1 to 64 letters, digits, '_', \
                     '.' or '-' (it is an MQTT topic level)",
                    "r".repeat(65)
                ),
            ),
            (
                example_with("name = \"main-offline\"\n", ""),
                12,
                "rules[0].name",
                "is missing: the rule's name, unique in the file".into(),
            ),
            // Meters and windows.
            (
                example_with(
                    "meter = \"PANEL_MAIN\"\noffline",
                    "meter = \"PANEL_X\"\noffline",
                ),
                14,
                "rules[0].meter",
                "unknown panel or virtual meter \"PANEL_X\" (declare it under [panels] or \
                 [meters] of the meters file)"
                    .into(),
            ),
            (
                example_with("in_window = \"WBP\"", "in_window = \"PEAK\""),
                37,
                "rules[4].in_window",
                "\"PEAK\" is not a window of tariff \"pln\", the tariff of TOWER_A: its \
                 windows are LWBP, WBP, SHOULDER"
                    .into(),
            ),
            (
                example_with(
                    "meter = \"TOWER_A\"\npower_above_kw = 100.25\nin_window = \"WBP\"",
                    "meter = \"PANEL_FLAT\"\npower_above_kw = 100.25\nin_window = \"WBP\"",
                ),
                37,
                "rules[4].in_window",
                "\"WBP\" is not a window of tariff \"flat\", the tariff of PANEL_FLAT: its \
                 windows are all day"
                    .into(),
            ),
            // Targets.
            (
                example_with("notify = [\"ops\"]", "notify = [\"ops\", \"nope\"]"),
                39,
                "rules[4].notify[1]",
                "unknown target \"nope\" (expected one of: ops, pager, mqtt)".into(),
            ),
            (
                example_with("notify = [\"ops\"]", "notify = [\"ops\", \"ops\"]"),
                39,
                "rules[4].notify[1]",
                "\"ops\" is listed twice".into(),
            ),
            (
                example_with("[mqtt]\ntopic_prefix = \"DATA/PM\"\n", "\n\n")
                    .replace("notify = [\"ops\"]", "notify = [\"mqtt\"]"),
                39,
                "rules[4].notify[0]",
                "\"mqtt\" needs an [mqtt] table in this file".into(),
            ),
            (
                example_with("[mqtt]", "[mqtt.broker]"),
                9,
                "mqtt.broker",
                "unknown key (expected one of: topic_prefix)".into(),
            ),
            (
                example_with("\"DATA/PM\"", "\"DATA/#\""),
                10,
                "mqtt.topic_prefix",
                "\"DATA/#\" must not contain MQTT wildcards (# or +)".into(),
            ),
            (
                example_with("[webhooks.pager]", "[webhooks.mqtt]"),
                6,
                "webhooks.mqtt",
                "\"mqtt\" names the [mqtt] target in notify: give the webhook another name".into(),
            ),
            (
                example_with("[webhooks.pager]", "[webhooks.\"pa ger\"]"),
                6,
                "webhooks.pa ger",
                "\"pa ger\" contains ' ': a name is 1 to 64 letters, digits, '_', '.' or '-' \
                 (it is an MQTT topic level)"
                    .into(),
            ),
            (
                example_with(
                    "https://hooks.example.com/energy",
                    "ftp://hooks.example.com/",
                ),
                3,
                "webhooks.ops.url",
                "\"ftp://hooks.example.com/\" is not an http:// or https:// URL with a host".into(),
            ),
            (
                example_with("https://hooks.example.com/energy", "https:///energy"),
                3,
                "webhooks.ops.url",
                "\"https:///energy\" has no host: it must be an http:// or https:// URL with \
                 a host"
                    .into(),
            ),
            (
                example_with(
                    "https://hooks.example.com/energy",
                    "hooks.example.com/energy",
                ),
                3,
                "webhooks.ops.url",
                "\"hooks.example.com/energy\" is not an http:// or https:// URL with a host".into(),
            ),
            (
                example_with("10.0.0.7:8080", "10.0.0.7:80800"),
                7,
                "webhooks.pager.url",
                "\"http://10.0.0.7:80800/hook\" has the port \"80800\": a port is a number \
                 from 0 to 65535"
                    .into(),
            ),
            (
                example_with(
                    "https://hooks.example.com/energy",
                    "https://hooks example.com/",
                ),
                3,
                "webhooks.ops.url",
                "\"https://hooks example.com/\" contains ' ': it must be an http:// or \
                 https:// URL with a host"
                    .into(),
            ),
            (
                example_with("url = \"http://10.0.0.7:8080/hook\"", "secret_env = \"X\""),
                6,
                "webhooks.pager.url",
                "is missing: where to POST notifications (e.g. url = \
                 \"https://hooks.example.com/energy\")"
                    .into(),
            ),
            (
                example_with("\"OPS_WEBHOOK_SECRET\"", "\"ops-secret\""),
                4,
                "webhooks.ops.secret_env",
                "\"ops-secret\" is not an environment variable name: capital letters, digits \
                 and '_', not starting with a digit ([A-Z_][A-Z0-9_]*); the secret itself is \
                 never written in this file"
                    .into(),
            ),
            (
                example_with("\"OPS_WEBHOOK_SECRET\"", "\"1SECRET\""),
                4,
                "webhooks.ops.secret_env",
                "\"1SECRET\" is not an environment variable name: capital letters, digits \
                 and '_', not starting with a digit ([A-Z_][A-Z0-9_]*); the secret itself is \
                 never written in this file"
                    .into(),
            ),
            // Unknown keys, and the shape of the file.
            (
                example_with("for_minutes = 5", "for_minute = 5"),
                21,
                "rules[1].for_minute",
                format!("unknown key (expected one of: {rule_keys})"),
            ),
            (
                example_with("secret_env", "secret"),
                4,
                "webhooks.ops.secret",
                "unknown key (expected one of: url, secret_env)".into(),
            ),
            (
                format!("{EXAMPLE}[rule]\nname = \"x\"\n"),
                40,
                "rule",
                "unknown key (expected one of: webhooks, mqtt, rules)".into(),
            ),
            (
                "[rules]\nname = \"x\"\n".into(),
                1,
                "rules",
                "must be an array of tables, not table: write each rule under [[rules]]".into(),
            ),
        ];
        for (text, line, field, message) in cases {
            let e = error(&text);
            assert_eq!(
                (e.line, e.field.as_str(), e.message.as_str()),
                (line, field, message.as_str()),
                "\n{text}"
            );
            assert_eq!(
                e.to_string(),
                format!("a.toml line {line}, {field}: {message}")
            );
        }
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let e = error(&example_with("for_minutes = 5", "for_minutes = "));
        assert_eq!((e.line, e.field.as_str()), (21, "(syntax)"), "{e}");
    }

    #[test]
    fn urls_are_checked_by_hand_for_scheme_host_and_port() {
        for good in [
            "https://hooks.example.com",
            "HTTPS://Hooks.Example.com/x?y=1#z",
            "http://user:pw@10.0.0.7:8080/hook",
            "http://[::1]:9000/",
            "http://localhost",
        ] {
            assert_eq!(url_problem(good), None, "{good}");
        }
        for bad in [
            "https://",
            "https://:443/",
            "http://[::1/",
            "http://[]/",
            "http://h:/",
            "http://h:x/",
            "http://h\u{7}/",
            "mailto:ops@example.com",
            "http://a$b/",
            "http://a:b:80/",
        ] {
            assert!(url_problem(bad).is_some(), "{bad}");
        }
    }

    // ---- The state machine ----

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 5, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn rule(meter: &str, condition: Condition) -> Rule {
        Rule {
            name: "r".into(),
            meter: meter.into(),
            condition,
            notify: vec![],
        }
    }

    fn power(kw: f64, window: &str) -> Observation {
        Observation {
            seconds_since_last_seen: Some(0),
            power_kw: Some(kw),
            window: Some(window.into()),
            ..Observation::default()
        }
    }

    fn seen_ago(seconds: i64) -> Observation {
        Observation {
            seconds_since_last_seen: Some(seconds),
            ..Observation::default()
        }
    }

    /// Every evaluation of `steps` (minute, observation) from the default state: the events
    /// with the minute they happened at, and the last state.
    fn run(rule: &Rule, steps: &[(i64, Observation)]) -> (Vec<(i64, Event)>, RuleState) {
        let mut state = RuleState::default();
        let mut events = Vec::new();
        for (minute, seen) in steps {
            let (next, event) = rule.evaluate(&state, seen, t(*minute));
            events.extend(event.map(|e| (*minute, e)));
            state = next;
        }
        (events, state)
    }

    fn transitions(events: &[(i64, Event)]) -> Vec<(i64, Transition)> {
        events.iter().map(|(m, e)| (*m, e.transition)).collect()
    }

    #[test]
    fn offline_fires_once_after_its_minutes_and_resolves_once() {
        let r = rule("PANEL_MAIN", Condition::Offline { minutes: 10 });
        // The last reading at minute 0; evaluated every minute until minute 15, then a reading.
        let mut steps: Vec<(i64, Observation)> = (0..=15).map(|m| (m, seen_ago(m * 60))).collect();
        steps.push((16, seen_ago(5)));
        steps.push((17, seen_ago(65)));
        let (events, state) = run(&r, &steps);
        // At minute 10 it is exactly 10 minutes old, not more.
        assert_eq!(
            transitions(&events),
            vec![(11, Transition::Fired), (16, Transition::Resolved)]
        );
        let (fired, resolved) = (&events[0].1, &events[1].1);
        assert_eq!(
            fired.message,
            "PANEL_MAIN has been OFFLINE for 11 min (limit 10 min)"
        );
        assert_eq!((fired.value, fired.threshold), (11.0, 10.0));
        assert_eq!(fired.at, t(11));
        assert_eq!(
            resolved.message,
            "PANEL_MAIN is back ONLINE: last reading 0 min ago (limit 10 min)"
        );
        assert_eq!(resolved.at, t(16));
        assert_eq!(
            state,
            RuleState {
                firing: false,
                pending_since: None,
                fired_at: None,
                value: Some(65.0 / 60.0),
            }
        );
    }

    #[test]
    fn a_meter_never_seen_is_offline_at_once() {
        let r = rule("PANEL_MAIN", Condition::Offline { minutes: 10 });
        let (next, event) = r.evaluate(&RuleState::default(), &Observation::default(), t(0));
        let event = event.expect("fired");
        assert_eq!(event.transition, Transition::Fired);
        assert_eq!(
            event.message,
            "PANEL_MAIN is OFFLINE: no reading yet (limit 10 min)"
        );
        assert_eq!(event.value, 0.0);
        assert!(next.firing);
        assert_eq!(next.value, None);
    }

    #[test]
    fn power_above_with_for_minutes_fires_only_after_holding_that_long_and_a_dip_resets_it() {
        let r = rule(
            "PANEL_MAIN",
            Condition::PowerAbove {
                kw: Price::new(150, 0),
                for_minutes: 5,
                window: None,
            },
        );
        let steps = [
            (0, power(160.0, "LWBP")),  // above: pending from 0
            (3, power(170.0, "LWBP")),  // 3 min
            (4, power(150.0, "LWBP")),  // equal is not above: the wait starts again
            (5, power(151.0, "LWBP")),  // pending from 5
            (9, power(163.2, "LWBP")),  // 4 min
            (10, power(163.2, "LWBP")), // 5 min: fires
            (11, power(180.0, "LWBP")),
            (40, power(180.0, "LWBP")), // still firing: nothing
            (41, power(149.0, "LWBP")), // resolves
            (42, power(149.0, "LWBP")),
        ];
        let (events, _) = run(&r, &steps);
        assert_eq!(
            transitions(&events),
            vec![(10, Transition::Fired), (41, Transition::Resolved)]
        );
        assert_eq!(
            events[0].1.message,
            "PANEL_MAIN: power 163.2 kW above 150 kW for 5 min"
        );
        assert_eq!((events[0].1.value, events[0].1.threshold), (163.2, 150.0));
        assert_eq!(
            events[1].1.message,
            "PANEL_MAIN: power 149 kW back below 150 kW"
        );

        let (_, state) = run(&r, &steps[..5]);
        assert_eq!(state.pending_since, Some(t(5)));
        assert!(!state.firing);
    }

    #[test]
    fn power_above_without_for_minutes_fires_at_the_first_evaluation_above() {
        let r = rule(
            "PANEL_MAIN",
            Condition::PowerAbove {
                kw: Price::new(1, -1),
                for_minutes: 0,
                window: None,
            },
        );
        // 0.1 read as a power is not above 0.1 written as a threshold.
        let (events, _) = run(&r, &[(0, power(0.1, "x")), (1, power(0.1000001, "x"))]);
        assert_eq!(transitions(&events), vec![(1, Transition::Fired)]);
    }

    #[test]
    fn in_window_holds_only_inside_the_window() {
        let r = rule(
            "TOWER_A",
            Condition::PowerAbove {
                kw: Price::new(100, 0),
                for_minutes: 0,
                window: Some("WBP".into()),
            },
        );
        let steps = [
            (0, power(120.0, "LWBP")), // above, but outside the window
            (1, power(120.0, "WBP")),  // fires
            (2, power(130.0, "WBP")),
            (3, power(130.0, "LWBP")), // the window is over: resolves
            (
                4,
                Observation {
                    window: None,
                    ..power(130.0, "")
                },
            ),
        ];
        let (events, _) = run(&r, &steps);
        assert_eq!(
            transitions(&events),
            vec![(1, Transition::Fired), (3, Transition::Resolved)]
        );
        assert_eq!(
            events[0].1.message,
            "TOWER_A: power 120 kW above 100 kW in window WBP"
        );
        assert_eq!(
            events[1].1.message,
            "TOWER_A: window WBP is over (power 130 kW, limit 100 kW)"
        );
        assert!(!r.holds(&power(500.0, "LWBP")));
        assert!(r.holds(&power(500.0, "WBP")));
    }

    #[test]
    fn a_budget_fires_when_crossed_and_resolves_the_next_day_when_usage_starts_again() {
        let r = rule(
            "TOWER_A",
            Condition::TodayUsageAbove {
                limit: Usage::from_nano_kwh(2_000_500_000_000),
            },
        );
        let usage = |nano_kwh: i128| Observation {
            today_usage: Usage::from_nano_kwh(nano_kwh),
            ..Observation::default()
        };
        let steps = [
            (0, usage(1_999_000_000_000)),
            (60, usage(2_000_500_000_000)), // at the limit: not above
            (61, usage(2_000_500_000_001)), // one nano-kWh above: fires
            (120, usage(2_300_000_000_000)),
            (24 * 60, usage(0)), // midnight: resolves
            (24 * 60 + 1, usage(1)),
        ];
        let (events, _) = run(&r, &steps);
        assert_eq!(
            transitions(&events),
            vec![(61, Transition::Fired), (24 * 60, Transition::Resolved)]
        );
        assert_eq!(
            events[0].1.message,
            "TOWER_A: today's usage 2000.5 kWh above 2000.5 kWh"
        );
        assert_eq!(
            events[1].1.message,
            "TOWER_A: today's usage 0 kWh back below 2000.5 kWh"
        );
        assert_eq!(events[1].1.threshold, 2000.5);
    }

    #[test]
    fn a_cost_budget_compares_exact_costs() {
        let r = rule(
            "TOWER_A",
            Condition::TodayCostAbove {
                limit: Cost::from_minor_units(300_000_000),
            },
        );
        let cost = |minor: i128| Observation {
            today_cost: Cost::from_minor_units(minor),
            ..Observation::default()
        };
        let (events, _) = run(
            &r,
            &[(0, cost(300_000_000)), (1, cost(300_000_050)), (2, cost(0))],
        );
        assert_eq!(
            transitions(&events),
            vec![(1, Transition::Fired), (2, Transition::Resolved)]
        );
        assert_eq!(
            events[0].1.message,
            "TOWER_A: today's cost 3000000.50 above 3000000"
        );
        assert_eq!(events[0].1.value, 3_000_000.5);
        assert_eq!(
            events[1].1.message,
            "TOWER_A: today's cost 0 back below 3000000"
        );
    }

    #[test]
    fn a_persisted_firing_state_produces_no_second_event_after_a_restart() {
        let r = rule("PANEL_MAIN", Condition::Offline { minutes: 10 });
        let (state, event) = r.evaluate(&RuleState::default(), &seen_ago(900), t(0));
        assert!(event.is_some());
        // The process ends; the state is kept as JSON and read back by the next one.
        let saved = serde_json::to_string(&state).unwrap();
        let restored: RuleState = serde_json::from_str(&saved).unwrap();
        assert_eq!(restored, state);
        let (state, event) = r.evaluate(&restored, &seen_ago(1500), t(10));
        assert_eq!(event, None);
        // It resolves with the id of the firing it ends.
        let (_, event) = r.evaluate(&state, &seen_ago(1), t(20));
        let event = event.expect("resolved");
        assert_eq!(event.id, format!("r:{}:resolved", "2026-12-06T05:00:00Z"));
    }

    #[test]
    fn event_ids_are_stable_and_distinct_for_fired_and_resolved() {
        let r = Rule {
            name: "main-overload".into(),
            ..rule(
                "PANEL_MAIN",
                Condition::PowerAbove {
                    kw: Price::new(150, 0),
                    for_minutes: 0,
                    window: None,
                },
            )
        };
        let steps = [
            (10, power(163.2, "")),
            (20, power(170.0, "")),
            (25, power(1.0, "")),
        ];
        let (first, _) = run(&r, &steps);
        let (again, _) = run(&r, &steps);
        assert_eq!(first, again);
        assert_eq!(first[0].1.id, "main-overload:2026-12-06T05:10:00Z:fired");
        assert_eq!(first[1].1.id, "main-overload:2026-12-06T05:10:00Z:resolved");
        assert_eq!(
            event_id("r", t(0) + Duration::milliseconds(250), Transition::Fired),
            "r:2026-12-06T05:00:00.250Z:fired"
        );
    }

    #[test]
    fn no_figure_never_holds_for_power_and_never_panics() {
        let r = rule(
            "PANEL_MAIN",
            Condition::PowerAbove {
                kw: Price::ZERO,
                for_minutes: 0,
                window: None,
            },
        );
        for kw in [f64::NAN, f64::NEG_INFINITY, f64::INFINITY] {
            assert!(!r.holds(&power(kw, "")), "{kw}");
        }
        assert!(!r.holds(&Observation::default()));
        let (events, _) = run(&r, &[(0, power(1.0, "")), (1, power(f64::NAN, ""))]);
        assert_eq!(events[1].1.value, 0.0);
        assert_eq!(
            events[1].1.message,
            "PANEL_MAIN: no power reading, so no longer above 0 kW"
        );
        let offline = rule("PANEL_MAIN", Condition::Offline { minutes: 10080 });
        for seconds in [i64::MIN, -1, i64::MAX] {
            let _ = offline.evaluate(&RuleState::default(), &seen_ago(seconds), t(0));
        }
    }

    #[test]
    fn a_wait_started_in_the_future_counts_from_now() {
        let r = rule(
            "PANEL_MAIN",
            Condition::PowerAbove {
                kw: Price::new(150, 0),
                for_minutes: 5,
                window: None,
            },
        );
        let state = RuleState {
            pending_since: Some(t(60)),
            ..RuleState::default()
        };
        let (next, event) = r.evaluate(&state, &power(200.0, ""), t(0));
        assert_eq!((next.pending_since, event), (Some(t(0)), None));
    }

    fn any_rule() -> impl Strategy<Value = Rule> {
        prop_oneof![
            (1u32..=30).prop_map(|minutes| Condition::Offline { minutes }),
            (
                0u128..200,
                0u32..=10,
                proptest::option::of(Just("WBP".to_owned()))
            )
                .prop_map(|(kw, for_minutes, window)| Condition::PowerAbove {
                    kw: Price::new(kw, 0),
                    for_minutes,
                    window,
                }),
            (0i128..100).prop_map(|n| Condition::TodayUsageAbove {
                limit: Usage::from_nano_kwh(n)
            }),
            (0i128..100).prop_map(|n| Condition::TodayCostAbove {
                limit: Cost::from_minor_units(n)
            }),
        ]
        .prop_map(|condition| rule("M", condition))
    }

    fn any_observation() -> impl Strategy<Value = Observation> {
        (
            proptest::option::of(prop_oneof![-100i64..3000, any::<i64>()]),
            proptest::option::of(prop_oneof![
                0.0f64..300.0,
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY)
            ]),
            prop_oneof![0i128..200, any::<i128>()],
            prop_oneof![0i128..200, any::<i128>()],
            proptest::option::of(prop_oneof![Just("WBP".to_owned()), Just("LWBP".to_owned())]),
        )
            .prop_map(|(seconds, power, usage, cost, window)| Observation {
                seconds_since_last_seen: seconds,
                power_kw: power,
                today_usage: Usage::from_nano_kwh(usage),
                today_cost: Cost::from_minor_units(cost),
                window,
            })
    }

    proptest! {
        /// Over any sequence of observations (times going forward or back, restarts from the
        /// persisted state), events strictly alternate Fired, Resolved, Fired…, starting with
        /// Fired; the state says whether the last one was a firing; a resolution carries the
        /// id of the firing it ends.
        #[test]
        fn events_strictly_alternate_starting_with_fired(
            rule in any_rule(),
            steps in proptest::collection::vec(
                (any_observation(), -120i64..900, any::<bool>()), 0..60),
        ) {
            let mut state = RuleState::default();
            let mut now = t(0);
            let mut last: Option<Event> = None;
            for (seen, step_seconds, restart) in steps {
                now += Duration::seconds(step_seconds);
                if restart {
                    let saved = serde_json::to_string(&state).unwrap();
                    let restored: RuleState = serde_json::from_str(&saved).unwrap();
                    prop_assert_eq!(&restored, &state);
                    state = restored;
                }
                let (next, event) = rule.evaluate(&state, &seen, now);
                if let Some(event) = event {
                    let expected = match &last {
                        Some(e) if e.transition == Transition::Fired => Transition::Resolved,
                        _ => Transition::Fired,
                    };
                    prop_assert_eq!(event.transition, expected);
                    prop_assert!(event.value.is_finite());
                    let ended = last.as_ref().filter(|_| expected == Transition::Resolved);
                    if let Some(fired) = ended {
                        prop_assert_eq!(
                            event.id.trim_end_matches("resolved"),
                            fired.id.trim_end_matches("fired")
                        );
                    }
                    last = Some(event);
                }
                prop_assert_eq!(
                    next.firing,
                    last.as_ref().is_some_and(|e| e.transition == Transition::Fired)
                );
                state = next;
            }
        }
    }
}
