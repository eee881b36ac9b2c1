//! Secrets never leave their wrappers by accident: `Debug`/`Display` of the
//! secret-bearing types, `Config::redacted_json`, `{:?}` of a whole
//! `Config`, and every error message — for valid and invalid inputs, from
//! the environment and from flags.

use std::collections::HashMap;
use std::ffi::OsString;

use usersvc::config::{self, Command, Config, DatabaseUrl, RedisUrl, Secret};

const PW: &str = "s3cr3t-pw";

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Command, config::ConfigErrors> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config::parse(&args, &|key| env.get(key).cloned())
}

fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
    match run(args, env) {
        Ok(Command::Serve(config)) => config,
        other => panic!("{args:?}: {other:?}"),
    }
}

/// Every way a password can be written into DATABASE_URL.
const DATABASE_URLS: &[&str] = &[
    "postgres://app:s3cr3t-pw@db:5432/users?sslmode=require",
    "postgresql://app:s3cr3t-pw@db/users",
    "postgres://app@db/users?password=s3cr3t-pw",
    "postgres://app@db/users?sslmode=disable&password=s3cr3t-pw",
    "postgres://app:s3cr3t-pw@db/users?password=s3cr3t-pw",
    "host=db user=app password=s3cr3t-pw dbname=users",
    "host=db user=app password='s3cr3t-pw' dbname=users",
    "password = s3cr3t-pw host=db",
];

const REDIS_URLS: &[&str] = &[
    "redis://:s3cr3t-pw@cache:6379/0",
    "rediss://app:s3cr3t-pw@cache",
    "redis://s3cr3t-pw@cache",
    "redis://cache?password=s3cr3t-pw",
];

#[test]
fn secret_formats_as_redacted() {
    let secret = Secret::new(PW.to_owned());
    assert_eq!(format!("{secret}"), "[REDACTED]");
    assert_eq!(format!("{secret:?}"), "[REDACTED]");
    assert_eq!(secret.expose_secret(), PW);
}

#[test]
fn database_url_shows_no_password_in_either_form() {
    for text in DATABASE_URLS {
        let url = DatabaseUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        for shown in [
            url.to_string(),
            format!("{url:?}"),
            format!("{url:#?}"),
            url.redacted().to_owned(),
        ] {
            assert!(!shown.contains(PW), "{text} shown as {shown}");
            assert!(shown.contains("***"), "{text} shown as {shown}");
        }
        assert_eq!(
            url.pg_config().get_password(),
            Some(PW.as_bytes()),
            "{text}"
        );
        assert_eq!(url.expose_secret(), *text);
    }
    let url = DatabaseUrl::parse("postgres://app:s3cr3t-pw@db:5432/users?sslmode=require")
        .expect("valid");
    assert_eq!(
        url.to_string(),
        "postgres://app:***@db:5432/users?sslmode=require"
    );
    let url =
        DatabaseUrl::parse("host=db user=app password=s3cr3t-pw dbname=users").expect("valid");
    assert_eq!(
        url.to_string(),
        "host=db user=app password=*** dbname=users"
    );
}

#[test]
fn redis_url_shows_no_credentials() {
    for text in REDIS_URLS {
        let url = RedisUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        for shown in [
            url.to_string(),
            format!("{url:?}"),
            url.redacted().to_owned(),
        ] {
            assert!(!shown.contains(PW), "{text} shown as {shown}");
        }
        assert_eq!(url.expose_secret(), *text);
    }
    let url = RedisUrl::parse("rediss://app:s3cr3t-pw@cache:6380/1").expect("valid");
    assert_eq!(url.to_string(), "rediss://***@cache:6380/1");
}

#[test]
fn redacted_json_and_debug_never_contain_a_password() {
    for db in DATABASE_URLS {
        for redis in REDIS_URLS {
            let env = [
                ("DATABASE_URL", *db),
                ("REDIS_URL", *redis),
                ("WEBHOOK_URL", "https://bot:s3cr3t-pw@hooks.example.com/in"),
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "http://otel:s3cr3t-pw@collector:4318",
                ),
            ];
            let config = config(&[], &env);
            let json = config.redacted_json();
            let printed = format!(
                "{json} {} {config:?} {config:#?}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
            assert!(!printed.contains(PW), "{db} / {redis}:\n{printed}");
            assert!(json["DATABASE_URL"]
                .as_str()
                .is_some_and(|s| s.contains("***")));
            assert!(json["REDIS_URL"]
                .as_str()
                .is_some_and(|s| s.contains("***")));
            assert_eq!(json["WEBHOOK_URL"], "https://***@hooks.example.com/in");
            assert_eq!(
                json["OTEL_EXPORTER_OTLP_ENDPOINT"],
                "http://***@collector:4318"
            );
        }
    }
    // The same through flags.
    let config = config(
        &[
            "--database-url",
            DATABASE_URLS[0],
            "--redis-url",
            REDIS_URLS[0],
        ],
        &[],
    );
    assert!(!config.redacted_json().to_string().contains(PW));
}

#[test]
fn no_error_message_contains_a_password() {
    let bad_database_urls = [
        "postgres://app:s3cr3t-pw@db:99999/users",
        "postgres://app:s3cr3t-pw@db/users?sslmode=sometimes",
        "postgres://app:s3cr3t-pw@[::1/users",
        "mysql://app:s3cr3t-pw@db/users",
        "host=db password='s3cr3t-pw",
        "host=db bogus=s3cr3t-pw",
        "s3cr3t-pw",
        "user=app password=s3cr3t-pw",
    ];
    let bad_redis_urls = [
        "http://:s3cr3t-pw@cache",
        "redis://:s3cr3t-pw@cache:0",
        "redis://:s3cr3t-pw@",
        "redis://:s3cr3t-pw@cache/x",
        "redis://:s3cr3t/pw@cache",
    ];
    // (arguments, environment)
    type Attempt = (Vec<String>, Vec<(&'static str, String)>);
    let mut attempts: Vec<Attempt> = Vec::new();
    for db in bad_database_urls {
        attempts.push((vec![], vec![("DATABASE_URL", db.to_owned())]));
        attempts.push((vec!["--database-url".into(), db.into()], vec![]));
        attempts.push((vec![format!("--database-url={db}")], vec![]));
    }
    for redis in bad_redis_urls {
        attempts.push((vec![], vec![("REDIS_URL", redis.to_owned())]));
        attempts.push((vec![format!("--redis-url={redis}")], vec![]));
    }
    let good_db = (
        "DATABASE_URL",
        "postgres://app:s3cr3t-pw@db/users".to_owned(),
    );
    for (var, value) in [
        ("WEBHOOK_URL", "ftp://bot:s3cr3t-pw@hooks.example.com"),
        ("WEBHOOK_URL", "https://bot:s3cr3t-pw@hooks.example.com:0"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "bot:s3cr3t-pw@collector"),
    ] {
        attempts.push((vec![], vec![good_db.clone(), (var, value.to_owned())]));
    }
    // Mistyped flags and misplaced arguments carrying a secret.
    for args in [
        vec!["--databse-url=postgres://app:s3cr3t-pw@db/users".to_owned()],
        vec![
            "--databse-url".into(),
            "postgres://app:s3cr3t-pw@db/users".into(),
        ],
        vec!["postgres://app:s3cr3t-pw@db/users".into()],
        vec!["migrate".into(), "postgres://app:s3cr3t-pw@db/users".into()],
        vec!["migrate".into(), "down".into(), "s3cr3t-pw".into()],
        vec!["--help=s3cr3t-pw".into(), "--version".into()],
        vec!["--print-config=s3cr3t-pw".into()],
        vec!["-ps3cr3t-pw".into()],
    ] {
        attempts.push((args, vec![good_db.clone()]));
    }
    // The budget error, with a password elsewhere in the config.
    attempts.push((
        vec![],
        vec![good_db.clone(), ("DRAIN_DELAY", "1h".to_owned())],
    ));

    for (args, env) in attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match run(&args, &env) {
            Ok(Command::Help | Command::Version) => {}
            Ok(other) => panic!("{args:?} {env:?} accepted: {other:?}"),
            Err(errors) => {
                let text = format!("{errors} {errors:?}");
                assert!(!text.contains(PW), "{args:?} {env:?} leaked:\n{text}");
                assert!(!text.contains("s3cr3t"), "{args:?} {env:?} leaked:\n{text}");
            }
        }
    }
}
