//! The rules that need only the parsed Dockerfile, run over every stage whatever is built:
//! StageNameCasing, FromAsCasing, ReservedStageName, DuplicateStageName,
//! ConsistentInstructionCasing, MaintainerDeprecated and NoEmptyContinuation.

use super::{Linter, Location, RuleId};
use crate::ast::{Dockerfile, Node, Span};
use std::collections::HashMap;

/// Stage names FROM and `--from` already give a meaning to.
const RESERVED_STAGE_NAMES: [&str; 2] = ["context", "scratch"];

pub(super) fn check(df: &Dockerfile, source: &str, lint: &Linter) {
    let mut stage_lines: HashMap<String, usize> = HashMap::new();
    let mut in_stage = false;
    // Keywords of the stages (FROM and what follows; not the global ARGs before the first
    // FROM), for the casing majority.
    let mut keywords: Vec<(&str, Span)> = Vec::new();
    for node in &df.nodes {
        if let Some(line) = node.empty_continuation {
            let at = Location {
                span: node.span,
                line,
                column: 0,
            };
            lint.report(
                RuleId::NoEmptyContinuation,
                at,
                "empty line inside a continued instruction".into(),
                None,
            );
        }
        match node.keyword.as_str() {
            "from" => {
                in_stage = true;
                from_rules(node, source, lint, &mut stage_lines);
            }
            "maintainer" => lint.report(
                RuleId::MaintainerDeprecated,
                Location::find(source, node.span, node.keyword_as_written()),
                "MAINTAINER is deprecated".into(),
                None,
            ),
            _ => {}
        }
        if in_stage {
            keywords.push((node.keyword_as_written(), node.span));
        }
    }
    casing(&keywords, source, lint);
}

/// Casing of the stage name and of `AS`, and whether the name is reserved or taken.
fn from_rules(node: &Node, source: &str, lint: &Linter, seen: &mut HashMap<String, usize>) {
    let [_, as_kw, name] = node.args.as_slice() else {
        return;
    };
    if !as_kw.eq_ignore_ascii_case("as") {
        return;
    }
    let (as_at, name_at) = as_and_name(source, node.span, as_kw, name);
    let lower = name.to_lowercase();
    if *name != lower {
        lint.report(
            RuleId::StageNameCasing,
            name_at,
            format!("stage name '{name}' is not lower-case"),
            Some(format!("name the stage '{lower}'")),
        );
    }
    let from_kw = node.keyword_as_written();
    let cased = if from_kw == from_kw.to_lowercase() {
        Some(as_kw.to_lowercase())
    } else if from_kw == from_kw.to_uppercase() {
        Some(as_kw.to_uppercase())
    } else {
        // A mixed-case FROM is ConsistentInstructionCasing's business.
        None
    };
    if let Some(want) = cased
        && *as_kw != want
    {
        lint.report(
            RuleId::FromAsCasing,
            as_at,
            format!("'{as_kw}' is not cased like '{from_kw}'"),
            Some(format!("write '{want}'")),
        );
    }
    if RESERVED_STAGE_NAMES.contains(&lower.as_str()) {
        lint.report(
            RuleId::ReservedStageName,
            name_at,
            format!(
                "'{lower}' already means something to FROM and --from; it should not name a stage"
            ),
            None,
        );
    }
    match seen.get(&lower) {
        Some(first) => lint.report(
            RuleId::DuplicateStageName,
            name_at,
            format!("stage name '{lower}' is already used by the stage on line {first}"),
            None,
        ),
        None => {
            seen.insert(lower, node.span.start_line);
        }
    }
}

/// Where `AS` and the stage name after it are: the first line of the instruction where the
/// two words follow each other (the instruction's first line when none does).
fn as_and_name(source: &str, span: Span, as_kw: &str, name: &str) -> (Location, Location) {
    for line in span.start_line..=span.end_line {
        let Some(text) = source.lines().nth(line.saturating_sub(1)) else {
            break;
        };
        let mut words = Vec::new();
        let mut start = None;
        for (col, c) in text.chars().chain([' ']).enumerate() {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(col),
                (true, Some(s)) => {
                    words.push((s, text.chars().skip(s).take(col - s).collect::<String>()));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(pair) = words.windows(2).find(|w| w[0].1 == as_kw && w[1].1 == name) {
            let at = |column: usize| Location {
                span,
                line,
                column: column + 1,
            };
            return (at(pair[0].0), at(pair[1].0));
        }
    }
    (Location::of(span), Location::of(span))
}

/// ConsistentInstructionCasing: every keyword in the case most keywords of the stages use
/// (counting only those written in one case; a tie counts as upper-case).
fn casing(keywords: &[(&str, Span)], source: &str, lint: &Linter) {
    let is_lower = |k: &str| k == k.to_lowercase();
    let is_upper = |k: &str| k == k.to_uppercase();
    let lower = keywords.iter().filter(|(k, _)| is_lower(k)).count();
    let upper = keywords
        .iter()
        .filter(|(k, _)| is_upper(k) && !is_lower(k))
        .count();
    let majority_lower = lower > upper;
    for (kw, span) in keywords {
        let (wrong, case, want) = if majority_lower {
            (!is_lower(kw), "lower", kw.to_lowercase())
        } else {
            (!is_upper(kw), "upper", kw.to_uppercase())
        };
        if wrong {
            lint.report(
                RuleId::ConsistentInstructionCasing,
                Location::find(source, *span, kw),
                format!("'{kw}' is not {case}-case like most instructions of this Dockerfile"),
                Some(format!("write '{want}'")),
            );
        }
    }
}
