//! Small formatting helpers shared by the commands.

pub use crate::util::text::bytes;

/// Print `value` as one line of JSON on stdout.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` UTC.
pub fn date(secs: i64) -> String {
    let (y, m, d, hh, mm, _) = crate::util::text::civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_table() {
        for (n, s) in [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (5 << 30, "5.0 GiB")] {
            assert_eq!(bytes(n), s);
        }
    }

    #[test]
    fn date_table() {
        for (secs, s) in
            [(0, "1970-01-01 00:00"), (951_782_400, "2000-02-29 00:00"), (1_795_000_000, "2026-11-18 11:06")]
        {
            assert_eq!(date(secs), s);
        }
    }
}
