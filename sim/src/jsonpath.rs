//! The subset of JSONPath that printer columns use: `.a.b`, `.a[0]`, `.a[*].b` and filters
//! like `.status.conditions[?(@.type=="Ready")].status`.

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(Vec<String>, String),
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                steps.push(Step::Field(r[..end].to_string()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = find_close(r)?;
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            if inner == "*" {
                steps.push(Step::All);
            } else if let Ok(i) = inner.parse() {
                steps.push(Step::Index(i));
            } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                let (lhs, rhs) = f.split_once("==")?;
                let field = lhs.trim().strip_prefix("@.")?;
                let value = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
                steps.push(Step::Filter(
                    field.split('.').map(str::to_string).collect(),
                    value.to_string(),
                ));
            } else {
                let quoted = inner.trim_matches(|c| c == '"' || c == '\'');
                steps.push(Step::Field(quoted.to_string()));
            }
        } else {
            return None;
        }
    }
    Some(steps)
}

/// Index of the `]` closing the bracket just opened, skipping quoted text.
fn find_close(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// All values the path selects in `obj` (empty when it matches nothing or is malformed).
pub fn find<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else {
        return vec![];
    };
    let mut current = vec![obj];
    for step in &steps {
        current = current
            .into_iter()
            .flat_map(|v| -> Vec<&Value> {
                match step {
                    Step::Field(f) => v.get(f.as_str()).into_iter().collect(),
                    Step::Index(i) => v.get(*i).into_iter().collect(),
                    Step::All => match v {
                        Value::Array(a) => a.iter().collect(),
                        Value::Object(m) => m.values().collect(),
                        _ => vec![],
                    },
                    Step::Filter(field, value) => v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter(|item| {
                                    field
                                        .iter()
                                        .try_fold(*item, |x, f| x.get(f.as_str()))
                                        .is_some_and(|x| scalar(x) == *value)
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn printer_column_paths_select_values() {
        let obj = json!({"spec": {"version": "1.2"}, "status": {"conditions": [
            {"type": "Reconciling", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "BackupFailed"}],
            "backups": [{"takenAt": "t1"}, {"takenAt": "t2"}]}});
        assert_eq!(find(&obj, ".spec.version"), vec![&json!("1.2")]);
        assert_eq!(
            find(&obj, ".status.conditions[?(@.type==\"Ready\")].reason"),
            vec![&json!("BackupFailed")]
        );
        assert_eq!(find(&obj, ".status.backups[0].takenAt"), vec![&json!("t1")]);
        assert_eq!(find(&obj, ".status.backups[*].takenAt").len(), 2);
        assert!(find(&obj, ".status.missing").is_empty());
        assert!(find(&obj, "not a path").is_empty());
    }
}
