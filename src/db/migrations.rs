//! The SQL migrations compiled into the binary.
//!
//! Embedding (`include_str!`) means the image carries its schema and no
//! `migrations/` directory has to be shipped or mounted. The file layout is
//! golang-migrate's (`NNNNNN_name.up.sql` / `.down.sql`) so the seed's tooling
//! still reads it. A unit test fails when a file in `migrations/` is missing
//! from this list, so a new file cannot be forgotten.

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The numeric prefix of the file name; strictly increasing.
    pub version: i64,
    /// The file stem without direction, e.g. `000001_users`.
    pub name: &'static str,
    /// SQL applied by `up`.
    pub up: &'static str,
    /// SQL applied by `down`.
    pub down: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            up: include_str!(concat!("../../migrations/", $name, ".up.sql")),
            down: include_str!(concat!("../../migrations/", $name, ".down.sql")),
        }
    };
}

/// Every migration, in order.
pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "000001_users"),
    migration!(2, "000002_events"),
    migration!(3, "000003_idempotency_keys"),
    migration!(4, "000004_events_payload_json"),
    migration!(5, "000005_outbox_worker"),
    migration!(6, "000006_write_deadline"),
    migration!(7, "000007_idempotency_version"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_file_in_the_directory_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut on_disk = BTreeSet::new();
        for entry in std::fs::read_dir(dir).expect("migrations/ exists") {
            let name = entry.expect("dir entry").file_name();
            let name = name.to_string_lossy().into_owned();
            if name.ends_with(".sql") {
                on_disk.insert(name);
            }
        }
        let embedded: BTreeSet<String> = MIGRATIONS
            .iter()
            .flat_map(|m| [format!("{}.up.sql", m.name), format!("{}.down.sql", m.name)])
            .collect();
        assert_eq!(on_disk, embedded, "migrations/ and MIGRATIONS differ");
    }

    #[test]
    fn versions_match_file_names_and_increase() {
        let mut last = 0;
        for m in MIGRATIONS {
            let prefix: i64 = m
                .name
                .split('_')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("numeric prefix");
            assert_eq!(prefix, m.version, "{}", m.name);
            assert!(m.version > last, "{} out of order", m.name);
            assert!(!m.up.trim().is_empty() && !m.down.trim().is_empty());
            last = m.version;
        }
    }
}
