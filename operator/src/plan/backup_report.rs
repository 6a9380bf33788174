//! What a backup Job reports it wrote, read from its termination message.

/// What a backup Job says it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    pub location: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
}

/// The strict reading of a backup's termination message, required of presets: JSON with a
/// non-empty `location`, a positive `sizeBytes` and a 64-digit hex `sha256`.
pub fn parse_report(message: Option<&str>) -> Result<BackupReport, String> {
    let text = message
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or("no termination message")?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| format!("not JSON: {:?}", clip(text)))?;
    let location = value
        .get("location")
        .and_then(|v| v.as_str())
        .filter(|l| !l.is_empty())
        .ok_or("no location")?;
    let size = value
        .get("sizeBytes")
        .and_then(|v| v.as_i64())
        .filter(|s| *s > 0)
        .ok_or("no positive sizeBytes")?;
    let sha256 = value
        .get("sha256")
        .and_then(|v| v.as_str())
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("no 64-digit hex sha256")?;
    Ok(BackupReport {
        location: Some(location.to_string()),
        size_bytes: Some(size),
        sha256: Some(sha256.to_ascii_lowercase()),
    })
}

/// Whatever a hand-written template's Job reported, field by field.
pub fn lenient_report(message: Option<&str>) -> BackupReport {
    let report = message.and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok());
    let field = |key: &str| report.as_ref().and_then(|r| r.get(key)).cloned();
    BackupReport {
        location: field("location").and_then(|v| v.as_str().map(String::from)),
        size_bytes: field("sizeBytes").and_then(|v| v.as_i64()),
        sha256: field("sha256").and_then(|v| v.as_str().map(String::from)),
    }
}

fn clip(text: &str) -> String {
    text.chars().take(120).collect()
}
