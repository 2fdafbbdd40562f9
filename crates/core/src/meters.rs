//! The virtual-meters file (`METERS_FILE`, TOML, described in docs/meters.md): the building's
//! physical panels with where they are (`building`, `floor`, `tenant`), and its virtual meters,
//! each an expression of `+` and `-` over panels and other virtual meters (a tower's floors
//! together, the loss between a main panel and the panels under it).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::panel::PanelId;
use crate::toml_file::{self, get, join, LocatedError, Value};
use crate::usage::{Energy, Usage};

/// Longest accepted tag (`building`, `floor`, `tenant`), in characters.
pub const MAX_TAG_CHARS: usize = 64;

const TAG_KEYS: &[&str] = &["building", "floor", "tenant"];
const METER_KEYS: &[&str] = &["expression", "building", "floor", "tenant"];

/// Where a panel or a virtual meter is; every tag is optional. Values are kept trimmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags {
    pub building: Option<String>,
    pub floor: Option<String>,
    pub tenant: Option<String>,
}

/// One physical panel of a virtual meter, and how many times it counts (negative when it is
/// subtracted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub panel: String,
    pub coefficient: i64,
}

/// A virtual meter: its name, its expression as written (trimmed), and that expression
/// expanded to physical panels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualMeter {
    pub name: String,
    pub expression: String,
    /// Physical panels only (nested meters expanded), coefficients of the same panel summed,
    /// none zero, sorted by panel id; never empty.
    pub terms: Vec<Term>,
    pub tags: Tags,
}

/// A virtual-meters file, read and checked: the declared panels and the virtual meters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meters {
    panels: BTreeMap<String, Tags>,
    meters: BTreeMap<String, VirtualMeter>,
}

/// Why a virtual-meters file was refused: where, which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path} line {line}, {field}: {message}")]
pub struct MetersFileError {
    pub path: String,
    pub line: usize,
    /// The field's path in the file, as `meters.LOSS_A.expression`.
    pub field: String,
    pub message: String,
}

impl LocatedError for MetersFileError {
    fn located(path: String, line: usize, field: String, message: String) -> Self {
        MetersFileError {
            path,
            line,
            field,
            message,
        }
    }
}

type Reader<'a> = toml_file::Reader<'a, MetersFileError>;

impl Meters {
    /// Reads a virtual-meters file's text; `path` only names it in errors. An empty file
    /// declares nothing.
    pub fn parse(text: &str, path: &str) -> Result<Meters, MetersFileError> {
        parse(text, path)
    }

    /// Declared physical panels and their tags, by id.
    pub fn panels(&self) -> &BTreeMap<String, Tags> {
        &self.panels
    }

    /// Virtual meters sorted by name.
    pub fn virtual_meters(&self) -> impl Iterator<Item = &VirtualMeter> {
        self.meters.values()
    }

    /// The virtual meter called `name`.
    pub fn get(&self, name: &str) -> Option<&VirtualMeter> {
        self.meters.get(name)
    }

    /// Whether the file declares no virtual meter (it may still declare panels).
    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
    }

    /// Every physical panel some virtual meter's terms use, sorted, without repeats.
    pub fn members(&self) -> Vec<String> {
        self.meters
            .values()
            .flat_map(|m| m.terms.iter().map(|t| t.panel.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}

impl VirtualMeter {
    /// The members' usage combined: Σ coefficient × `of(panel)`, exactly (saturating at the
    /// ends of the range, never clamped at 0: a difference can be negative). A member without
    /// data is [`Usage::ZERO`], for the caller to give.
    pub fn usage(&self, of: impl Fn(&str) -> Usage) -> Usage {
        self.terms
            .iter()
            .map(|t| of(&t.panel).times(t.coefficient))
            .sum()
    }

    /// The same for an [`Energy`]: its usage and its estimated part are both combined.
    pub fn energy(&self, of: impl Fn(&str) -> Energy) -> Energy {
        self.terms
            .iter()
            .map(|t| of(&t.panel).times(t.coefficient))
            .sum()
    }

    /// The same for a float (power in kW, a register in kWh).
    pub fn value(&self, of: impl Fn(&str) -> f64) -> f64 {
        self.terms
            .iter()
            .map(|t| t.coefficient as f64 * of(&t.panel))
            .sum()
    }
}

/// A meter as read, before its names are resolved.
struct Draft {
    name: String,
    /// Where its expression was written.
    at: usize,
    expression: String,
    /// Every name of the expression with its sign (±1), in the order written.
    names: Vec<(String, i64)>,
    tags: Tags,
}

fn parse(text: &str, path: &str) -> Result<Meters, MetersFileError> {
    let reader = Reader::new(text, path);
    let root = reader.document()?;
    let top = reader.table(&root, "", &["panels", "meters"], "key")?;

    let mut panels = BTreeMap::new();
    let mut panel_lines = BTreeMap::new();
    if let Some(value) = get(top, "panels") {
        for (id, value) in in_file_order(reader.map(value, "panels")?) {
            let field = join("panels", id.get_ref());
            name_of(&reader, id, &field)?;
            let table = reader.table(value, &field, TAG_KEYS, "key")?;
            panels.insert(id.get_ref().to_string(), read_tags(&reader, table, &field)?);
            panel_lines.insert(id.get_ref().to_string(), reader.line(id.span().start));
        }
    }

    let mut drafts = Vec::new();
    if let Some(value) = get(top, "meters") {
        for (name, value) in in_file_order(reader.map(value, "meters")?) {
            let field = join("meters", name.get_ref());
            let at = name.span().start;
            let name = name_of(&reader, name, &field)?;
            if let Some(line) = panel_lines.get(&name) {
                return Err(reader.error(
                    at,
                    &field,
                    format!(
                        "\"{name}\" is also declared under [panels] (line {line}): a name is \
                         either a physical panel or a virtual meter"
                    ),
                ));
            }
            drafts.push(read_meter(&reader, name, value, &field)?);
        }
    }

    let meter_names: BTreeSet<&str> = drafts.iter().map(|d| d.name.as_str()).collect();
    for draft in &drafts {
        for (name, _) in &draft.names {
            if !panels.contains_key(name) && !meter_names.contains(name.as_str()) {
                let hint = if name.contains('-') {
                    " (a difference needs spaces: \"A - B\")"
                } else {
                    ""
                };
                return Err(reader.error(
                    draft.at,
                    &expression_field(&draft.name),
                    format!(
                        "unknown panel or meter \"{name}\" (declare it under [panels] or \
                         [meters]){hint}"
                    ),
                ));
            }
        }
    }

    // From here on, meters are numbered in name order.
    drafts.sort_by(|a, b| a.name.cmp(&b.name));
    let index: BTreeMap<&str, usize> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = drafts
        .iter()
        .map(|d| {
            let mut out: Vec<usize> = Vec::new();
            for (name, _) in &d.names {
                if let Some(&m) = index.get(name.as_str()) {
                    if !out.contains(&m) {
                        out.push(m);
                    }
                }
            }
            out
        })
        .collect();
    let graph = Components::of(&edges);
    if let Some(first) = (0..drafts.len()).find(|&m| graph.on_cycle(m, &edges)) {
        let path: Vec<&str> = graph
            .cycle_through(first, &edges)
            .into_iter()
            .filter_map(|m| drafts.get(m).map(|d| d.name.as_str()))
            .collect();
        return Err(reader.error(
            drafts[first].at,
            &expression_field(&drafts[first].name),
            format!(
                "{} refers to itself: {}",
                drafts[first].name,
                path.join(" → ")
            ),
        ));
    }

    // No cycles: every component is one meter, each completed after the meters it uses.
    let mut expanded: Vec<Option<BTreeMap<String, i64>>> = vec![None; drafts.len()];
    for &m in &graph.completed {
        let draft = &drafts[m];
        let overflow = || {
            reader.error(
                draft.at,
                &expression_field(&draft.name),
                format!(
                    "expands to a panel counted more than {} times: nest fewer copies",
                    i64::MAX
                ),
            )
        };
        let mut terms: BTreeMap<String, i64> = BTreeMap::new();
        for (name, sign) in &draft.names {
            let parts: Vec<(&str, i64)> = match index.get(name.as_str()) {
                Some(&sub) => expanded[sub]
                    .iter()
                    .flatten()
                    .map(|(panel, c)| (panel.as_str(), *c))
                    .collect(),
                None => vec![(name.as_str(), 1)],
            };
            for (panel, coefficient) in parts {
                let add = coefficient.checked_mul(*sign).ok_or_else(overflow)?;
                let sum = terms.entry(panel.to_owned()).or_insert(0);
                *sum = sum.checked_add(add).ok_or_else(overflow)?;
            }
        }
        terms.retain(|_, c| *c != 0);
        expanded[m] = Some(terms);
    }

    let mut meters = BTreeMap::new();
    for (draft, terms) in drafts.into_iter().zip(expanded) {
        let terms: Vec<Term> = terms
            .unwrap_or_default()
            .into_iter()
            .map(|(panel, coefficient)| Term { panel, coefficient })
            .collect();
        if terms.is_empty() {
            return Err(reader.error(
                draft.at,
                &expression_field(&draft.name),
                "every panel cancels out: the meter is always 0",
            ));
        }
        meters.insert(
            draft.name.clone(),
            VirtualMeter {
                name: draft.name,
                expression: draft.expression,
                terms,
                tags: draft.tags,
            },
        );
    }
    Ok(Meters { panels, meters })
}

fn expression_field(name: &str) -> String {
    format!("meters.{name}.expression")
}

type Entry<'v, 'i> = (&'v toml::Spanned<toml::de::DeString<'i>>, &'v Value<'i>);

/// The entries of `table` in the order they were written.
fn in_file_order<'v, 'i>(table: &'v toml::de::DeTable<'i>) -> Vec<Entry<'v, 'i>> {
    let mut entries: Vec<Entry<'v, 'i>> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// The key `key` as a name, which must be a panel id.
fn name_of(
    reader: &Reader<'_>,
    key: &toml::Spanned<toml::de::DeString<'_>>,
    field: &str,
) -> Result<String, MetersFileError> {
    PanelId::parse(key.get_ref())
        .map(|id| id.as_str().to_owned())
        .map_err(|e| reader.error(key.span().start, field, format!("not a panel id: {e}")))
}

fn read_tags(
    reader: &Reader<'_>,
    table: &toml::de::DeTable<'_>,
    field: &str,
) -> Result<Tags, MetersFileError> {
    let tag = |key: &str| -> Result<Option<String>, MetersFileError> {
        let Some(value) = get(table, key) else {
            return Ok(None);
        };
        let tag_field = join(field, key);
        let text = reader.string(value, &tag_field)?;
        let text = text.trim();
        let chars = text.chars().count();
        if chars > MAX_TAG_CHARS {
            return Err(reader.error(
                value.span().start,
                &tag_field,
                format!("is {chars} characters long, more than {MAX_TAG_CHARS}"),
            ));
        }
        Ok(Some(text.to_owned()))
    };
    Ok(Tags {
        building: tag("building")?,
        floor: tag("floor")?,
        tenant: tag("tenant")?,
    })
}

fn read_meter(
    reader: &Reader<'_>,
    name: String,
    value: &Value<'_>,
    field: &str,
) -> Result<Draft, MetersFileError> {
    let table = reader.table(value, field, METER_KEYS, "key")?;
    let expression_field = join(field, "expression");
    let Some(expression) = get(table, "expression") else {
        return Err(reader.error(
            value.span().start,
            &expression_field,
            "is missing: the panels and meters this meter adds up, as \"A + B - C\"",
        ));
    };
    let at = expression.span().start;
    let Some(text) = expression.get_ref().as_str() else {
        return Err(reader.error(
            at,
            &expression_field,
            format!("must be a string, not {}", expression.get_ref().type_str()),
        ));
    };
    let names = parse_expression(text).map_err(|m| reader.error(at, &expression_field, m))?;
    Ok(Draft {
        name,
        at,
        expression: text.trim().to_owned(),
        names,
        tags: read_tags(reader, table, field)?,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'e> {
    Name(&'e str),
    Open,
    Close,
    /// `+`, `-` or `−`, with its sign.
    Op(char, i64),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The tokens of `text` with their positions (in characters, from 1). A run of name
/// characters is one name, unless it is only `-`: then each `-` is a minus.
fn tokens(text: &str) -> Result<Vec<(usize, Token<'_>)>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().zip(1..).peekable();
    while let Some(((start, c), position)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push((position, Token::Open)),
            ')' => out.push((position, Token::Close)),
            '+' => out.push((position, Token::Op('+', 1))),
            '−' => out.push((position, Token::Op('−', -1))),
            c if is_name_char(c) => {
                let mut end = start + c.len_utf8();
                while let Some(((at, next), _)) = chars.peek().copied() {
                    if !is_name_char(next) {
                        break;
                    }
                    end = at + next.len_utf8();
                    chars.next();
                }
                let run = &text[start..end];
                if run.chars().all(|c| c == '-') {
                    out.extend(
                        (position..)
                            .take(run.len())
                            .map(|p| (p, Token::Op('-', -1))),
                    );
                } else {
                    out.push((position, Token::Name(run)));
                }
            }
            other => {
                return Err(format!(
                    "unexpected character {other:?} at character {position}: an expression \
                     is panels and meters joined by +, - and parentheses"
                ))
            }
        }
    }
    Ok(out)
}

/// What came before the token being read.
#[derive(Clone, Copy)]
enum After {
    Start,
    Open(usize),
    Op(char, usize),
    Term,
}

/// Why a term was expected after `after` and is not there.
fn missing_term(after: After) -> String {
    match after {
        After::Op(op, at) => format!("expected a panel or meter after '{op}' at character {at}"),
        After::Open(at) => format!("expected a panel or meter after '(' at character {at}"),
        After::Start | After::Term => "expected a panel or meter".to_owned(),
    }
}

/// The names of an expression, each with its sign once parentheses are opened (`M - (A - B)`
/// is `M`, `-A`, `+B`), in the order written; or why it is not one. Reads without recursion,
/// so nesting as deep as the text allows is no danger.
fn parse_expression(text: &str) -> Result<Vec<(String, i64)>, String> {
    if text.trim().is_empty() {
        return Err(
            "is empty: give the panels and meters this meter adds up, as \"A + B - C\"".into(),
        );
    }
    let mut names = Vec::new();
    // The sign of the group being read, and for each open parenthesis, its position and the
    // sign of the group around it.
    let mut group = 1_i64;
    let mut open: Vec<(usize, i64)> = Vec::new();
    let mut sign = 1_i64;
    let mut after = After::Start;
    // The name just read, if the token before this one was a name.
    let mut previous: Option<&str> = None;
    for (position, token) in tokens(text)? {
        let term_expected = !matches!(after, After::Term);
        match token {
            Token::Name(_) | Token::Open if !term_expected => {
                let (what, dashed) = match token {
                    Token::Name(name) => (format!("\"{name}\""), name.starts_with('-')),
                    _ => ("'('".to_owned(), false),
                };
                let hint = if dashed || previous.is_some_and(|p| p.ends_with('-')) {
                    " (a difference needs spaces: \"A - B\")"
                } else {
                    ""
                };
                return Err(format!(
                    "expected + or - before {what} at character {position}{hint}"
                ));
            }
            Token::Name(name) => {
                names.push((name.to_owned(), group * sign));
                previous = Some(name);
                after = After::Term;
            }
            Token::Open => {
                open.push((position, group));
                group *= sign;
                sign = 1;
                previous = None;
                after = After::Open(position);
            }
            Token::Close => {
                let Some((_, outer)) = open.pop() else {
                    return Err(format!(
                        "unbalanced parentheses: ')' at character {position} has no '('"
                    ));
                };
                if term_expected {
                    return Err(missing_term(after));
                }
                group = outer;
                sign = 1;
                previous = None;
                after = After::Term;
            }
            Token::Op(op, op_sign) => {
                match after {
                    After::Term => {}
                    After::Op(..) => return Err(missing_term(after)),
                    After::Start | After::Open(_) => {
                        return Err(format!(
                            "expected a panel or meter at character {position}, found '{op}'"
                        ))
                    }
                }
                sign = op_sign;
                previous = None;
                after = After::Op(op, position);
            }
        }
    }
    if !matches!(after, After::Term) {
        return Err(missing_term(after));
    }
    if let Some((at, _)) = open.last() {
        return Err(format!(
            "unbalanced parentheses: '(' at character {at} is never closed"
        ));
    }
    Ok(names)
}

/// The strongly connected components of a graph (Tarjan's algorithm, without recursion).
struct Components {
    /// The component of each node.
    component: Vec<usize>,
    /// How many nodes each component has.
    size: Vec<usize>,
    /// The nodes in the order their components were completed: every node after the nodes
    /// it leads to, unless they are in its own component.
    completed: Vec<usize>,
}

impl Components {
    fn of(edges: &[Vec<usize>]) -> Components {
        let n = edges.len();
        let mut index: Vec<Option<usize>> = vec![None; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut next = 0;
        let mut result = Components {
            component: vec![0; n],
            size: Vec::new(),
            completed: Vec::with_capacity(n),
        };
        for root in 0..n {
            if index[root].is_some() {
                continue;
            }
            let mut calls: Vec<(usize, usize)> = vec![(root, 0)];
            index[root] = Some(next);
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&(v, i)) = calls.last() {
                if let Some(&w) = edges[v].get(i) {
                    if let Some(call) = calls.last_mut() {
                        call.1 += 1;
                    }
                    match index[w] {
                        None => {
                            index[w] = Some(next);
                            low[w] = next;
                            next += 1;
                            stack.push(w);
                            on_stack[w] = true;
                            calls.push((w, 0));
                        }
                        Some(iw) if on_stack[w] => low[v] = low[v].min(iw),
                        Some(_) => {}
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(u, _)) = calls.last() {
                    low[u] = low[u].min(low[v]);
                }
                if Some(low[v]) == index[v] {
                    let id = result.size.len();
                    let mut size = 0;
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        result.component[w] = id;
                        result.completed.push(w);
                        size += 1;
                        if w == v {
                            break;
                        }
                    }
                    result.size.push(size);
                }
            }
        }
        result
    }

    /// Whether a path leads from `node` back to itself.
    fn on_cycle(&self, node: usize, edges: &[Vec<usize>]) -> bool {
        self.size.get(self.component[node]).is_some_and(|s| *s > 1) || edges[node].contains(&node)
    }

    /// A shortest path from `node` (on a cycle) back to itself, both ends included.
    fn cycle_through(&self, node: usize, edges: &[Vec<usize>]) -> Vec<usize> {
        let mut parent: Vec<Option<usize>> = vec![None; edges.len()];
        let mut queue = VecDeque::from([node]);
        while let Some(u) = queue.pop_front() {
            for &w in &edges[u] {
                if w == node {
                    let mut back = vec![u];
                    let mut at = u;
                    while let Some(p) = parent[at] {
                        back.push(p);
                        at = p;
                    }
                    back.reverse();
                    back.push(node);
                    return back;
                }
                if parent[w].is_none() && self.component[w] == self.component[node] {
                    parent[w] = Some(u);
                    queue.push_back(w);
                }
            }
        }
        vec![node, node]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The example of the file format, with the panels its meters use declared.
    const EXAMPLE: &str = r#"# Physical panels (ids as published over MQTT): where they are.
[panels.PANEL_MAIN]
building = "Tower A"
floor = "Ground"
tenant = "Landlord"

[panels.PANEL_LANTAI_1]
building = "Tower A"
floor = "1"
tenant = "PT Maju"

[panels.PANEL_LANTAI_2]
[panels.PANEL_LANTAI_3]

# Virtual meters.
[meters.TOWER_A]
expression = "PANEL_LANTAI_1 + PANEL_LANTAI_2 + PANEL_LANTAI_3"
building = "Tower A"

[meters.LOSS_A]
expression = "PANEL_MAIN - (PANEL_LANTAI_1 + PANEL_LANTAI_2)"
building = "Tower A"
"#;

    fn meters(text: &str) -> Meters {
        match Meters::parse(text, "m.toml") {
            Ok(m) => m,
            Err(e) => panic!("refused: {e}\n{text}"),
        }
    }

    fn error(text: &str) -> MetersFileError {
        match Meters::parse(text, "m.toml") {
            Ok(m) => panic!("accepted: {m:?}\n{text}"),
            Err(e) => e,
        }
    }

    /// The terms of `name` as (panel, coefficient) pairs.
    fn terms(m: &Meters, name: &str) -> Vec<(String, i64)> {
        let meter = m.get(name).unwrap_or_else(|| panic!("no meter {name}"));
        meter
            .terms
            .iter()
            .map(|t| (t.panel.clone(), t.coefficient))
            .collect()
    }

    fn pairs(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
        expected
            .iter()
            .map(|(p, c)| ((*p).to_owned(), *c))
            .collect()
    }

    /// A file declaring panels `A`, `B`, `M`, `A-B` and the meter `X = expression`.
    fn with_expression(expression: &str) -> String {
        format!(
            "[panels.A]\n[panels.B]\n[panels.M]\n[panels.A-B]\n\n\
             [meters.X]\nexpression = \"{expression}\"\n"
        )
    }

    fn expression_terms(expression: &str) -> Vec<(String, i64)> {
        terms(&meters(&with_expression(expression)), "X")
    }

    #[test]
    fn the_example_is_read_with_its_tags_and_expressions_as_written() {
        let m = meters(EXAMPLE);
        assert_eq!(m.panels().len(), 4);
        assert_eq!(
            m.panels()["PANEL_LANTAI_1"],
            Tags {
                building: Some("Tower A".into()),
                floor: Some("1".into()),
                tenant: Some("PT Maju".into()),
            }
        );
        assert_eq!(m.panels()["PANEL_LANTAI_2"], Tags::default());
        let loss = m.get("LOSS_A").expect("LOSS_A");
        assert_eq!(
            loss.expression,
            "PANEL_MAIN - (PANEL_LANTAI_1 + PANEL_LANTAI_2)"
        );
        assert_eq!(loss.tags.building.as_deref(), Some("Tower A"));
        assert_eq!(loss.tags.floor, None);
        assert_eq!(
            terms(&m, "LOSS_A"),
            pairs(&[
                ("PANEL_LANTAI_1", -1),
                ("PANEL_LANTAI_2", -1),
                ("PANEL_MAIN", 1)
            ])
        );
        let names: Vec<&str> = m.virtual_meters().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["LOSS_A", "TOWER_A"]);
        assert!(!m.is_empty());
        assert_eq!(
            m.members(),
            [
                "PANEL_LANTAI_1",
                "PANEL_LANTAI_2",
                "PANEL_LANTAI_3",
                "PANEL_MAIN"
            ]
        );
    }

    #[test]
    fn an_empty_file_declares_nothing() {
        for text in ["", "# nothing yet\n", "[panels]\n[meters]\n"] {
            let m = meters(text);
            assert!(m.is_empty());
            assert!(m.panels().is_empty());
            assert!(m.members().is_empty());
            assert_eq!(m, Meters::default());
        }
        let only_panels = meters("[panels.P1]\nfloor = \"2\"\n");
        assert!(only_panels.is_empty());
        assert_eq!(only_panels.panels().len(), 1);
    }

    #[test]
    fn nested_meters_expand_to_physical_panels() {
        let m = meters(
            "[panels.MAIN]\n[panels.A]\n[panels.B]\n\
             [meters.LOSS]\nexpression = \"MAIN - FLOORS\"\n\
             [meters.FLOORS]\nexpression = \"A + B\"\n\
             [meters.TWICE_LOSS]\nexpression = \"LOSS + LOSS\"\n",
        );
        assert_eq!(
            terms(&m, "LOSS"),
            pairs(&[("A", -1), ("B", -1), ("MAIN", 1)])
        );
        assert_eq!(terms(&m, "FLOORS"), pairs(&[("A", 1), ("B", 1)]));
        assert_eq!(
            terms(&m, "TWICE_LOSS"),
            pairs(&[("A", -2), ("B", -2), ("MAIN", 2)])
        );
        assert_eq!(m.members(), ["A", "B", "MAIN"]);
    }

    #[test]
    fn a_dash_between_name_characters_is_part_of_the_name() {
        assert_eq!(expression_terms("A-B"), pairs(&[("A-B", 1)]));
        assert_eq!(expression_terms("A - B"), pairs(&[("A", 1), ("B", -1)]));
        assert_eq!(expression_terms("A − B"), pairs(&[("A", 1), ("B", -1)]));
        assert_eq!(expression_terms("A−B"), pairs(&[("A", 1), ("B", -1)]));
        assert_eq!(expression_terms("A+B"), pairs(&[("A", 1), ("B", 1)]));
        assert_eq!(expression_terms("(A)-(B)"), pairs(&[("A", 1), ("B", -1)]));
        assert_eq!(
            expression_terms("M\\t-\\nA-B"),
            pairs(&[("A-B", -1), ("M", 1)])
        );
    }

    #[test]
    fn parentheses_change_the_signs_inside_them() {
        assert_eq!(
            expression_terms("M - (A - B)"),
            pairs(&[("A", -1), ("B", 1), ("M", 1)])
        );
        assert_eq!(
            expression_terms("M - (A - (B + M))"),
            pairs(&[("A", -1), ("B", 1), ("M", 2)])
        );
        assert_eq!(
            expression_terms("((M)) + ((A − B))"),
            pairs(&[("A", 1), ("B", -1), ("M", 1)])
        );
    }

    #[test]
    fn coefficients_of_a_repeated_panel_add_up_and_zeros_are_dropped() {
        assert_eq!(expression_terms("A + A"), pairs(&[("A", 2)]));
        assert_eq!(
            expression_terms("A + B - A + A"),
            pairs(&[("A", 1), ("B", 1)])
        );
        assert_eq!(expression_terms("M + A - A"), pairs(&[("M", 1)]));
    }

    #[test]
    fn the_expression_is_kept_trimmed() {
        let m = meters(&with_expression("  A +  B \\t"));
        assert_eq!(m.get("X").map(|x| x.expression.as_str()), Some("A +  B"));
    }

    #[test]
    fn tags_are_kept_trimmed() {
        let m = meters("[panels.P]\nbuilding = \"  Tower B \"\n");
        assert_eq!(m.panels()["P"].building.as_deref(), Some("Tower B"));
    }

    /// `(file, line, field, message)`: each file is refused with exactly this error.
    fn refused(cases: &[(&str, usize, &str, &str)]) {
        for (text, line, field, message) in cases {
            let e = error(text);
            assert_eq!(
                (e.line, e.field.as_str(), e.message.as_str()),
                (*line, *field, *message),
                "\n{text}"
            );
            assert_eq!(
                e.to_string(),
                format!("m.toml line {line}, {field}: {message}")
            );
        }
    }

    #[test]
    fn a_meter_that_refers_to_itself_directly_is_refused() {
        refused(&[
            (
                "[panels.A]\n[meters.LOSS_A]\nexpression = \"A - LOSS_A\"\n",
                3,
                "meters.LOSS_A.expression",
                "LOSS_A refers to itself: LOSS_A → LOSS_A",
            ),
            (
                "[meters.SELF]\nexpression = \"SELF\"\n",
                2,
                "meters.SELF.expression",
                "SELF refers to itself: SELF → SELF",
            ),
        ]);
    }

    #[test]
    fn a_meter_that_refers_to_itself_through_others_is_refused_naming_the_path() {
        refused(&[
            (
                "[panels.A]\n\
                 [meters.LOSS_A]\nexpression = \"A - B\"\n\
                 [meters.B]\nexpression = \"C + A\"\n\
                 [meters.C]\nexpression = \"LOSS_A\"\n",
                5,
                "meters.B.expression",
                "B refers to itself: B → C → LOSS_A → B",
            ),
            (
                // OUTSIDE uses the cycle without being on it; the first meter on it is named.
                "[panels.A]\n\
                 [meters.AA_OUTSIDE]\nexpression = \"Z1 + A\"\n\
                 [meters.Z2]\nexpression = \"Z1\"\n\
                 [meters.Z1]\nexpression = \"A + Z2\"\n",
                7,
                "meters.Z1.expression",
                "Z1 refers to itself: Z1 → Z2 → Z1",
            ),
        ]);
    }

    #[test]
    fn an_unknown_name_is_refused_with_a_hint_when_it_has_a_dash() {
        refused(&[
            (
                &with_expression("A + NOPE"),
                7,
                "meters.X.expression",
                "unknown panel or meter \"NOPE\" (declare it under [panels] or [meters])",
            ),
            (
                &with_expression("M-A"),
                7,
                "meters.X.expression",
                "unknown panel or meter \"M-A\" (declare it under [panels] or [meters]) \
                 (a difference needs spaces: \"A - B\")",
            ),
        ]);
    }

    #[test]
    fn a_name_declared_as_a_panel_and_a_meter_is_refused() {
        refused(&[(
            "[panels.A]\n[panels.TOWER]\n\n[meters.TOWER]\nexpression = \"A\"\n",
            4,
            "meters.TOWER",
            "\"TOWER\" is also declared under [panels] (line 2): a name is either a physical \
             panel or a virtual meter",
        )]);
    }

    #[test]
    fn names_must_be_panel_ids() {
        refused(&[
            (
                "[panels.\"PANEL 1\"]\nfloor = \"1\"\n",
                1,
                "panels.PANEL 1",
                "not a panel id: panel id contains ' '; only letters, digits, '_', '.' and '-' \
                 are allowed",
            ),
            (
                "[panels.A]\n[meters.\"\"]\nexpression = \"A\"\n",
                2,
                "meters.",
                "not a panel id: panel id is empty",
            ),
            (
                &format!("[meters.{}]\nexpression = \"A\"\n", "M".repeat(65)),
                1,
                &format!("meters.{}", "M".repeat(65)),
                "not a panel id: panel id is 65 bytes long, more than 64",
            ),
        ]);
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_known_ones() {
        refused(&[
            (
                "[panels.A]\n[meter.X]\nexpression = \"A\"\n",
                2,
                "meter",
                "unknown key (expected one of: panels, meters)",
            ),
            (
                "[panels.A]\nfloor = \"1\"\nroom = \"3\"\n",
                3,
                "panels.A.room",
                "unknown key (expected one of: building, floor, tenant)",
            ),
            (
                "[panels.A]\n[meters.X]\nexpression = \"A\"\nexpresion = \"A\"\n",
                4,
                "meters.X.expresion",
                "unknown key (expected one of: expression, building, floor, tenant)",
            ),
            ("panels = 3\n", 1, "panels", "must be a table, not integer"),
            (
                "[panels]\nA = \"Tower A\"\n",
                2,
                "panels.A",
                "must be a table, not string",
            ),
        ]);
    }

    #[test]
    fn a_meter_without_an_expression_is_refused() {
        refused(&[
            (
                "[panels.A]\n\n[meters.X]\nbuilding = \"Tower A\"\n",
                3,
                "meters.X.expression",
                "is missing: the panels and meters this meter adds up, as \"A + B - C\"",
            ),
            (
                "[meters.X]\nexpression = 3\n",
                2,
                "meters.X.expression",
                "must be a string, not integer",
            ),
        ]);
    }

    #[test]
    fn malformed_expressions_are_refused_saying_where() {
        let empty = "is empty: give the panels and meters this meter adds up, as \"A + B - C\"";
        for (expression, message) in [
            ("", empty),
            ("   ", empty),
            ("A +", "expected a panel or meter after '+' at character 3"),
            (
                "A + - B",
                "expected a panel or meter after '+' at character 3",
            ),
            ("A −", "expected a panel or meter after '−' at character 3"),
            ("A - ", "expected a panel or meter after '-' at character 3"),
            (
                "(A - ) + B",
                "expected a panel or meter after '-' at character 4",
            ),
            ("- A", "expected a panel or meter at character 1, found '-'"),
            (
                "A + (+ B)",
                "expected a panel or meter at character 6, found '+'",
            ),
            (
                "A + ()",
                "expected a panel or meter after '(' at character 5",
            ),
            (
                "(A + B",
                "unbalanced parentheses: '(' at character 1 is never closed",
            ),
            (
                "A + (B - (M)",
                "unbalanced parentheses: '(' at character 5 is never closed",
            ),
            (
                "A + B)",
                "unbalanced parentheses: ')' at character 6 has no '('",
            ),
            (
                ")A",
                "unbalanced parentheses: ')' at character 1 has no '('",
            ),
            ("A B", "expected + or - before \"B\" at character 3"),
            ("A (B)", "expected + or - before '(' at character 3"),
            (
                "A -B",
                "expected + or - before \"-B\" at character 3 \
                 (a difference needs spaces: \"A - B\")",
            ),
            (
                "A- B",
                "expected + or - before \"B\" at character 4 \
                 (a difference needs spaces: \"A - B\")",
            ),
            (
                "A * B",
                "unexpected character '*' at character 3: an expression is panels and meters \
                 joined by +, - and parentheses",
            ),
            (
                "Ä + B",
                "unexpected character 'Ä' at character 1: an expression is panels and meters \
                 joined by +, - and parentheses",
            ),
            (
                "A − B / 2",
                "unexpected character '/' at character 7: an expression is panels and meters \
                 joined by +, - and parentheses",
            ),
        ] {
            refused(&[(
                &with_expression(expression),
                7,
                "meters.X.expression",
                message,
            )]);
        }
    }

    #[test]
    fn tags_must_be_short_non_empty_strings() {
        refused(&[
            (
                "[panels.X]\nbuilding = \"A\"\nfloor = \"  \"\n",
                3,
                "panels.X.floor",
                "must not be empty",
            ),
            (
                "[panels.A]\n[meters.M]\nexpression = \"A\"\ntenant = \"\"\n",
                4,
                "meters.M.tenant",
                "must not be empty",
            ),
            (
                "[panels.X]\nfloor = 1\n",
                2,
                "panels.X.floor",
                "must be a string, not integer",
            ),
            (
                &format!("[panels.X]\ntenant = \"{}\"\n", "é".repeat(65)),
                2,
                "panels.X.tenant",
                "is 65 characters long, more than 64",
            ),
        ]);
        let m = meters(&format!("[panels.X]\ntenant = \"{}\"\n", "é".repeat(64)));
        assert_eq!(
            m.panels()["X"].tenant.as_ref().map(|t| t.chars().count()),
            Some(64)
        );
    }

    #[test]
    fn a_meter_whose_panels_all_cancel_out_is_refused() {
        refused(&[
            (
                "[panels.A]\n[meters.ZERO]\nexpression = \"A - A\"\n",
                3,
                "meters.ZERO.expression",
                "every panel cancels out: the meter is always 0",
            ),
            (
                "[panels.A]\n[panels.B]\n\
                 [meters.SUM]\nexpression = \"A + B\"\n\
                 [meters.ZERO]\nexpression = \"SUM - (B + A)\"\n",
                6,
                "meters.ZERO.expression",
                "every panel cancels out: the meter is always 0",
            ),
        ]);
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let e = error("[panels.A]\nfloor = \n");
        assert_eq!((e.line, e.field.as_str()), (2, "(syntax)"), "{e}");
    }

    #[test]
    fn coefficients_that_overflow_are_refused() {
        let mut text = String::from("[panels.A]\n[meters.M0]\nexpression = \"A\"\n");
        for i in 1..=64 {
            let p = i - 1;
            text += &format!("[meters.M{i}]\nexpression = \"M{p} + M{p}\"\n");
        }
        let e = error(&text);
        assert_eq!(e.field, "meters.M63.expression", "{e}");
        assert!(e.message.contains("more than 9223372036854775807"), "{e}");
    }

    #[test]
    fn deep_nesting_and_long_chains_are_read_without_recursion() {
        let depth = 20_000;
        let deep = format!("{}A{}", "(".repeat(depth), ")".repeat(depth));
        assert_eq!(expression_terms(&deep), pairs(&[("A", 1)]));
        let mut text = String::from("[panels.A]\n[meters.M0]\nexpression = \"A\"\n");
        for i in 1..2_000 {
            text += &format!("[meters.M{i}]\nexpression = \"M{}\"\n", i - 1);
        }
        assert_eq!(terms(&meters(&text), "M1999"), pairs(&[("A", 1)]));
        text += "[meters.M0X]\nexpression = \"M1999\"\n";
        let cyclic = text.replace(
            "[meters.M0]\nexpression = \"A\"",
            "[meters.M0]\nexpression = \"M0X\"",
        );
        let e = error(&cyclic);
        assert!(
            e.message
                .starts_with("M0 refers to itself: M0 → M0X → M1999 → M1998"),
            "{e}"
        );
    }

    fn usage_of<'a>(nano: &'a [(&'a str, i128)]) -> impl Fn(&str) -> Usage + 'a {
        move |panel| {
            nano.iter()
                .find(|(p, _)| *p == panel)
                .map_or(Usage::ZERO, |(_, n)| Usage::from_nano_kwh(*n))
        }
    }

    #[test]
    fn usage_energy_and_value_combine_the_members_exactly_and_can_be_negative() {
        let m = meters(
            "[panels.MAIN]\n[panels.A]\n[panels.B]\n\
             [meters.FLOORS]\nexpression = \"A + B\"\n\
             [meters.LOSS]\nexpression = \"MAIN - FLOORS\"\n\
             [meters.DOUBLE]\nexpression = \"A + A\"\n",
        );
        let (loss, double) = (
            m.get("LOSS").expect("LOSS"),
            m.get("DOUBLE").expect("DOUBLE"),
        );
        let usage = [
            ("MAIN", 10_000_000_001),
            ("A", 4_000_000_000),
            ("B", 5_000_000_000),
        ];
        assert_eq!(
            loss.usage(usage_of(&usage)),
            Usage::from_nano_kwh(1_000_000_001)
        );
        // The floors used more than the main panel says: the loss is negative, not 0.
        let usage = [
            ("MAIN", 8_000_000_000),
            ("A", 4_000_000_000),
            ("B", 5_000_000_003),
        ];
        assert_eq!(
            loss.usage(usage_of(&usage)),
            Usage::from_nano_kwh(-1_000_000_003)
        );
        // A member without data counts as what the caller gives.
        assert_eq!(
            loss.usage(usage_of(&[("MAIN", 7)])),
            Usage::from_nano_kwh(7)
        );
        assert_eq!(
            double.usage(usage_of(&[("A", -3)])),
            Usage::from_nano_kwh(-6)
        );

        let energy = |panel: &str| match panel {
            "MAIN" => Energy {
                usage: Usage::from_nano_kwh(100),
                estimated: Usage::from_nano_kwh(10),
            },
            "A" => Energy {
                usage: Usage::from_nano_kwh(70),
                estimated: Usage::from_nano_kwh(0),
            },
            "B" => Energy {
                usage: Usage::from_nano_kwh(50),
                estimated: Usage::from_nano_kwh(30),
            },
            _ => Energy::ZERO,
        };
        assert_eq!(
            loss.energy(energy),
            Energy {
                usage: Usage::from_nano_kwh(-20),
                estimated: Usage::from_nano_kwh(-20),
            }
        );

        let kw = |panel: &str| match panel {
            "MAIN" => 12.5,
            "A" => 3.25,
            "B" => 10.0,
            _ => 0.0,
        };
        assert_eq!(loss.value(kw), -0.75);
        assert_eq!(double.value(kw), 6.5);
    }

    #[test]
    fn usage_saturates_instead_of_overflowing() {
        let m = meters("[panels.A]\n[meters.D]\nexpression = \"A + A\"\n");
        let d = m.get("D").expect("D");
        assert_eq!(
            d.usage(|_| Usage::from_nano_kwh(i128::MAX)),
            Usage::from_nano_kwh(i128::MAX)
        );
    }

    /// An expression over the panels `PANELS` (and, as leaf 4, the meter `SUB`).
    #[derive(Clone, Debug)]
    enum Expr {
        Leaf(usize),
        Chain(Box<Expr>, Vec<(Op, Expr)>),
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Plus,
        PlusTight,
        Minus,
        MinusSign,
        MinusSignTight,
    }

    const PANELS: [&str; 4] = ["PANEL-0", "PANEL.1", "p_2", "P3"];

    fn render(e: &Expr, out: &mut String, nested: bool) {
        match e {
            Expr::Leaf(i) => out.push_str(PANELS.get(*i).copied().unwrap_or("SUB")),
            Expr::Chain(first, rest) => {
                if nested {
                    out.push('(');
                }
                render(first, out, true);
                for (op, e) in rest {
                    out.push_str(match op {
                        Op::Plus => " + ",
                        Op::PlusTight => "+",
                        Op::Minus => " - ",
                        Op::MinusSign => " − ",
                        Op::MinusSignTight => "−",
                    });
                    render(e, out, true);
                }
                if nested {
                    out.push(')');
                }
            }
        }
    }

    /// The expression evaluated directly, leaf `i` being `leaves[i]`.
    fn eval(e: &Expr, leaves: &[f64]) -> f64 {
        match e {
            Expr::Leaf(i) => leaves[*i],
            Expr::Chain(first, rest) => {
                rest.iter()
                    .fold(eval(first, leaves), |sum, (op, e)| match op {
                        Op::Plus | Op::PlusTight => sum + eval(e, leaves),
                        _ => sum - eval(e, leaves),
                    })
            }
        }
    }

    fn expr(leaves: usize) -> impl Strategy<Value = Expr> {
        let op = prop_oneof![
            Just(Op::Plus),
            Just(Op::PlusTight),
            Just(Op::Minus),
            Just(Op::MinusSign),
            Just(Op::MinusSignTight),
        ];
        (0..leaves)
            .prop_map(Expr::Leaf)
            .prop_recursive(3, 24, 4, move |inner| {
                (
                    inner.clone(),
                    prop::collection::vec((op.clone(), inner), 0..4),
                )
                    .prop_map(|(first, rest)| Expr::Chain(Box::new(first), rest))
            })
    }

    proptest! {
        #[test]
        fn value_equals_the_expression_evaluated_directly(
            sub in expr(4),
            total in expr(5),
            values in prop::collection::vec(-1000i32..1000, 4),
        ) {
            let (mut sub_text, mut total_text) = (String::new(), String::new());
            render(&sub, &mut sub_text, false);
            render(&total, &mut total_text, false);
            let mut text = String::new();
            for panel in PANELS {
                text += &format!("[panels.\"{panel}\"]\n");
            }
            text += &format!("[meters.SUB]\nexpression = \"{sub_text}\"\n");
            text += &format!("[meters.TOTAL]\nexpression = \"{total_text}\"\n");
            let mut leaves: Vec<f64> = values.iter().map(|v| f64::from(*v)).collect();
            let sub_value = eval(&sub, &leaves);
            leaves.push(sub_value);
            let total_value = eval(&total, &leaves);
            let of = |panel: &str| {
                PANELS.iter().position(|p| *p == panel).map_or(f64::NAN, |i| leaves[i])
            };
            match Meters::parse(&text, "m.toml") {
                Ok(m) => {
                    let value = |name: &str| m.get(name).map(|v| v.value(of));
                    prop_assert_eq!(value("SUB"), Some(sub_value), "{}", text);
                    prop_assert_eq!(value("TOTAL"), Some(total_value), "{}", text);
                }
                // A meter said to cancel out is 0 whatever its panels' values.
                Err(e) => {
                    prop_assert_eq!(
                        e.message.as_str(),
                        "every panel cancels out: the meter is always 0",
                        "{}", text
                    );
                    let zero = if e.field == "meters.SUB.expression" {
                        sub_value
                    } else {
                        total_value
                    };
                    prop_assert_eq!(zero, 0.0, "{}", e);
                }
            }
        }

        #[test]
        fn no_expression_text_makes_the_reader_panic(
            expression in "[A-Za-z0-9_.()+− *\\-]{0,40}",
        ) {
            let text =
                format!("[panels.A]\n[panels.B]\n[meters.X]\nexpression = '{expression}'\n");
            let _ = Meters::parse(&text, "m.toml");
        }

        #[test]
        fn no_file_text_makes_the_reader_panic(text in "\\PC{0,200}") {
            let _ = Meters::parse(&text, "m.toml");
        }
    }
}
