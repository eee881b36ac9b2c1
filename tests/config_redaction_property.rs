//! Property test of the connection-string redaction: thousands of random
//! passwords, written into every form of `DATABASE_URL` / `REDIS_URL` /
//! `WEBHOOK_URL` both correctly encoded and carelessly unencoded, and no
//! byte of any of them may come out of `Display`, `Debug`, the redacted form,
//! a parse error or the whole configuration's error messages.
//!
//! How "no byte" is checked: every password is drawn from upper-case letters,
//! digits-free punctuation (`@ : / ? # & = % ' \ , [ ] ;` and space) and
//! non-ASCII letters, while the surrounding template is lower-case letters
//! and digits only. Whatever the parser makes of an unencoded password, any
//! letter of it that reached the output would be an upper-case or non-ASCII
//! letter, so the check is: the redacted text is *exactly* the template with
//! `***` for the password, or the string is refused. A hand-rolled generator
//! (xorshift, fixed seeds) keeps failures reproducible without a new crate.

use std::collections::HashMap;
use std::ffi::OsString;

use usersvc::config::{self, Command, DatabaseUrl, RedisUrl};

/// Cases per form; each is a different password.
const CASES: usize = 3_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("fits")
    }

    /// 1 to 12 characters, at least one a letter, biased towards the
    /// characters that end or split URL and key=value parts.
    fn password(&mut self) -> String {
        self.password_of(&['A', 'B', 'P', 'W', 'Z', 'Ä', 'Ж'])
    }

    fn password_of(&mut self, letters: &[char]) -> String {
        const SPECIAL: &[char] = &[
            '@', '@', '@', ':', '/', '?', '#', '&', '=', '%', '\'', '\\', ',', '[', ']', ';', ' ',
            '+', '*',
        ];
        let len = 1 + self.below(12);
        let mut out = String::new();
        for _ in 0..len {
            if self.below(2) == 0 {
                out.push(SPECIAL[self.below(SPECIAL.len())]);
            } else {
                out.push(letters[self.below(letters.len())]);
            }
        }
        if !out.chars().any(|c| letters.contains(&c)) {
            out.push(letters[self.below(letters.len())]);
        }
        out
    }
}

/// `%XX` for every byte that is not unreserved (RFC 3986).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A libpq single-quoted value.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// No letter from the password alphabet: nothing of a password slipped out.
fn assert_clean(shown: &str, password: &str, given: &str) {
    assert!(
        !shown
            .chars()
            .any(|c| c.is_uppercase() || !c.is_ascii() && c.is_alphabetic()),
        "password {password:?} in {given:?} shows as {shown:?}"
    );
}

/// One form of a connection string: how a password goes in, what must come
/// out when it is accepted.
struct Form {
    name: &'static str,
    build: fn(&str) -> String,
    shown: &'static str,
    /// The password is written as the grammar wants it: must be accepted.
    encoded: bool,
}

const DATABASE_FORMS: &[Form] = &[
    Form {
        name: "URL userinfo, percent-encoded",
        build: |pw| {
            format!(
                "postgres://app:{}@db1:5432/users?sslmode=disable",
                percent_encode(pw)
            )
        },
        shown: "postgres://app:***@db1:5432/users?sslmode=disable",
        encoded: true,
    },
    Form {
        name: "URL userinfo, unencoded",
        build: |pw| format!("postgres://app:{pw}@db1:5432/users?sslmode=disable"),
        shown: "postgres://app:***@db1:5432/users?sslmode=disable",
        encoded: false,
    },
    Form {
        name: "URL userinfo, unencoded, no path",
        build: |pw| format!("postgresql://app:{pw}@db1"),
        shown: "postgresql://app:***@db1",
        encoded: false,
    },
    Form {
        name: "URL query, percent-encoded",
        build: |pw| {
            format!(
                "postgres://app@db1/users?password={}&sslmode=disable",
                percent_encode(pw)
            )
        },
        shown: "postgres://app@db1/users?password=***&sslmode=disable",
        encoded: true,
    },
    Form {
        name: "URL query, unencoded",
        build: |pw| format!("postgres://app@db1/users?password={pw}&sslmode=disable"),
        shown: "postgres://app@db1/users?password=***&sslmode=disable",
        encoded: false,
    },
    Form {
        name: "URL query last, unencoded",
        build: |pw| format!("postgres://app@db1/users?sslmode=disable&password={pw}"),
        shown: "postgres://app@db1/users?sslmode=disable&password=***",
        encoded: false,
    },
    Form {
        name: "key=value, quoted",
        build: |pw| format!("host=db1 user=app password={} dbname=users", quote(pw)),
        shown: "host=db1 user=app password=*** dbname=users",
        encoded: true,
    },
    Form {
        name: "key=value, unquoted",
        build: |pw| format!("host=db1 user=app password={pw} dbname=users"),
        shown: "host=db1 user=app password=*** dbname=users",
        encoded: false,
    },
    Form {
        name: "key=value, unquoted, last",
        build: |pw| format!("host=db1 user=app password={pw}"),
        shown: "host=db1 user=app password=***",
        encoded: false,
    },
    Form {
        name: "key=value, quoted, unescaped",
        build: |pw| format!("host=db1 password='{pw}' user=app"),
        shown: "host=db1 password=*** user=app",
        encoded: false,
    },
];

fn check_form(form: &Form, seed: u64, parse: impl Fn(&str) -> Result<String, String>) {
    let mut rng = Rng(seed);
    let mut accepted = 0;
    for _ in 0..CASES {
        let password = rng.password();
        let given = (form.build)(&password);
        match parse(&given) {
            Ok(shown) => {
                accepted += 1;
                // "[REDACTED]" is the redactor's own fallback: safe, but
                // never expected for these forms. An unencoded password may
                // legitimately swallow what follows it (`\ ` escapes a
                // space), never anything else.
                let mask_end = form.shown.find("***").expect("template masks") + 3;
                if shown != form.shown {
                    assert!(
                        !form.encoded && shown.starts_with(&form.shown[..mask_end]),
                        "{}: password {password:?} in {given:?} shows as {shown:?}",
                        form.name
                    );
                    assert_clean(&shown, &password, &given);
                }
            }
            Err(error) => {
                assert!(!form.encoded, "{}: {given:?} refused: {error}", form.name);
                // Errors are fixed phrases; prove it for these bytes too.
                assert!(
                    error.is_ascii() && !error.contains(&password),
                    "{}: {given:?} refused as {error}",
                    form.name
                );
            }
        }
    }
    // The unencoded forms must still accept the passwords that need no
    // encoding, or the property would hold by refusing everything.
    assert!(accepted > CASES / 20, "{}: {accepted} accepted", form.name);
}

#[test]
fn database_url_redaction_never_shows_a_byte_of_any_password() {
    for (i, form) in DATABASE_FORMS.iter().enumerate() {
        check_form(form, 0x9e37_79b9_7f4a_7c15 ^ i as u64, |given| {
            let url = DatabaseUrl::parse(given).map_err(|e| e.to_string())?;
            let shown = url.to_string();
            assert_eq!(url.redacted(), shown);
            assert_eq!(format!("{url:?}"), format!("DatabaseUrl({shown:?})"));
            Ok(shown)
        });
    }
}

#[test]
fn the_password_of_the_bug_report_is_refused_not_half_printed() {
    let error = DatabaseUrl::parse("postgres://alice:PW@PW@db.example/users")
        .expect_err("two unencoded @ are ambiguous");
    let message = error.to_string();
    assert!(!message.contains("PW"), "{message}");
    assert!(message.contains("%40"), "{message}");
    // The same password, encoded, is fine.
    let url = DatabaseUrl::parse("postgres://alice:PW%40PW@db.example/users").expect("encoded");
    assert_eq!(url.to_string(), "postgres://alice:***@db.example/users");
    assert_eq!(url.pg_config().get_password(), Some(&b"PW@PW"[..]));
}

const REDIS_FORMS: &[Form] = &[
    Form {
        name: "redis userinfo, percent-encoded",
        build: |pw| format!("redis://app:{}@cache1:6379/0", percent_encode(pw)),
        shown: "redis://***@cache1:6379/0",
        encoded: true,
    },
    Form {
        name: "redis userinfo, unencoded",
        build: |pw| format!("rediss://:{pw}@cache1:6380/2"),
        shown: "rediss://***@cache1:6380/2",
        encoded: false,
    },
    Form {
        name: "redis query, unencoded",
        build: |pw| format!("redis://cache1/0?password={pw}"),
        shown: "redis://cache1/0?password=***",
        encoded: false,
    },
];

#[test]
fn redis_url_redaction_never_shows_a_byte_of_any_password() {
    for (i, form) in REDIS_FORMS.iter().enumerate() {
        check_form(form, 0x51_7cc1_b727_220a ^ i as u64, |given| {
            let url = RedisUrl::parse(given).map_err(|e| e.to_string())?;
            let shown = url.to_string();
            assert_eq!(format!("{url:?}"), format!("RedisUrl({shown:?})"));
            Ok(shown)
        });
    }
}

/// Every message of a whole configuration run: --print-config's JSON when
/// accepted, each error line when refused.
fn config_output(env: &[(&str, &str)]) -> Result<String, String> {
    let args: Vec<OsString> = ["--print-config"].iter().map(OsString::from).collect();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    match config::parse(&args, &|key| env.get(key).cloned()) {
        Ok(Command::PrintConfig(config)) => Ok(config.redacted_json().to_string()),
        Ok(_) => Err("not --print-config".to_owned()),
        Err(errors) => Err(errors.to_string()),
    }
}

#[test]
fn print_config_and_config_errors_never_show_a_byte_of_any_password() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..CASES / 3 {
        // Only non-ASCII letters: the output itself is full of upper case.
        let password = rng.password_of(&['Ä', 'Ж', 'Ω']);
        for (name, value) in [
            (
                "DATABASE_URL",
                format!("postgres://app:{password}@db1/users"),
            ),
            (
                "DATABASE_URL",
                format!("host=db1 password={password} user=app"),
            ),
            ("REDIS_URL", format!("redis://:{password}@cache1:6379")),
            ("WEBHOOK_URL", format!("https://app:{password}@hooks1/in")),
        ] {
            let mut env = vec![("DATABASE_URL", "postgres://app@db1/users")];
            env.retain(|(k, _)| *k != name);
            env.push((name, &value));
            let out = config_output(&env).unwrap_or_else(|error| error);
            assert!(
                out.is_ascii() && !out.contains("\\u"),
                "password {password:?} in {name}={value:?} shows in {out}"
            );
        }
    }
}
