//! Reading the operator's `/metrics` text: the samples by name and labels.

use std::collections::BTreeMap;

/// One sample: the series name, its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The name (`apprelease_upgrades_total`, `…_bucket`, …).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Every sample of the exposition text (comments skipped). Label values with escaped quotes
/// are not read; the operator's never have any.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key.to_string(), value.trim_matches('"').to_string()))
                })
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// The value of the series `name` with exactly these labels, if it is exposed.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples(text)
        .into_iter()
        .find(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value)
}

/// The series of `name`: their labels and values.
pub fn series(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .map(|s| (s.labels, s.value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total{result=\"ok\",reason=\"A\"} 3\ny 1.5\n# EOF\n";
        assert_eq!(
            value(text, "x_total", &[("reason", "A"), ("result", "ok")]),
            Some(3.0)
        );
        assert_eq!(value(text, "x_total", &[("result", "ok")]), None);
        assert_eq!(value(text, "y", &[]), Some(1.5));
        assert_eq!(series(text, "x_total").len(), 1);
    }
}
