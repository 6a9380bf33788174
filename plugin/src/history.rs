//! `history NAME`: `status.history`, newest first, as a table.

use apprelease_operator::api::HistoryEntry;

use crate::format;

/// The table of finished upgrades (and on-demand requests), newest first as stored.
pub fn render(history: &[HistoryEntry]) -> String {
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|h| {
            // An on-demand backup or restore is no upgrade: say which request it was.
            let reason = match &h.request {
                Some(r) => format!("{} ({:?} {})", h.reason, r.kind, r.name),
                None => h.reason.clone(),
            };
            vec![
                h.attempt.to_string(),
                h.from.clone(),
                h.to.clone(),
                format!("{:?}", h.result),
                reason,
                format::time(h.started_at),
                format::duration(h.finished_at - h.started_at),
                h.backup.clone().unwrap_or_default(),
            ]
        })
        .collect();
    format::table(
        &[
            "ATTEMPT", "FROM", "TO", "RESULT", "REASON", "STARTED", "DURATION", "BACKUP",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::release;

    #[test]
    fn one_row_per_entry() {
        let history = release().status.unwrap().history;
        assert_eq!(
            render(&history),
            "\
ATTEMPT   FROM    TO      RESULT       REASON                                STARTED                DURATION   BACKUP
3         1.1.0   1.1.0   Succeeded    Succeeded (Backup shop-nightly-q2x)   1970-01-01T00:30:00Z   45s        shop-backup-3
2         1.0.0   1.1.0   Succeeded    Succeeded                             1970-01-01T00:20:00Z   2m30s      shop-backup-2
1         1.0.0   1.2.0   RolledBack   RolloutFailed                         1970-01-01T00:10:00Z   3m         shop-backup-1
"
        );
    }

    #[test]
    fn an_empty_history_is_the_header_alone() {
        assert_eq!(
            render(&[]),
            "ATTEMPT   FROM   TO   RESULT   REASON   STARTED   DURATION   BACKUP\n"
        );
    }
}
