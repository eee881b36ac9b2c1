//! Golden tests for the JSON line format: exact lines for a fixed instant, escaping, key/value
//! types, duplicate names, and that every line is valid JSON whose `msg` round-trips.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::kv::Value;
use log::{Level, Record};
use usersvc::logging::context::{self, RequestContext, RequestId};
use usersvc::logging::format::{write_json, PANIC_MARKER};

/// 2026-11-24T09:01:02.345Z
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_795_510_862_345)
}

fn line_at(
    t: SystemTime,
    level: Level,
    target: &str,
    args: fmt::Arguments<'_>,
    kvs: &[(&str, Value<'_>)],
) -> String {
    let record = Record::builder()
        .level(level)
        .target(target)
        .args(args)
        .key_values(&kvs)
        .build();
    let mut out = Vec::new();
    write_json(&mut out, t, &record).unwrap();
    let s = String::from_utf8(out).expect("valid UTF-8");
    assert!(
        s.ends_with('\n') && s.matches('\n').count() == 1,
        "one line: {s:?}"
    );
    serde_json::from_str::<serde_json::Value>(&s).expect("valid JSON");
    s
}

fn line(args: fmt::Arguments<'_>, kvs: &[(&str, Value<'_>)]) -> String {
    line_at(now(), Level::Info, "usersvc::test", args, kvs)
}

const NO_KVS: &[(&str, Value<'static>)] = &[];

const HEAD: &str = r#"{"time":"2026-11-24T09:01:02.345Z","level":"INFO","msg":"#;

#[test]
fn plain_line() {
    assert_eq!(
        line(format_args!("listening"), NO_KVS),
        format!("{HEAD}\"listening\",\"target\":\"usersvc::test\"}}\n")
    );
}

#[test]
fn every_level_and_target() {
    for (level, name) in [
        (Level::Trace, "TRACE"),
        (Level::Debug, "DEBUG"),
        (Level::Info, "INFO"),
        (Level::Warn, "WARN"),
        (Level::Error, "ERROR"),
    ] {
        assert_eq!(
            line_at(now(), level, "usersvc::db::pool", format_args!("m"), NO_KVS),
            format!(
                "{{\"time\":\"2026-11-24T09:01:02.345Z\",\"level\":\"{name}\",\"msg\":\"m\",\"target\":\"usersvc::db::pool\"}}\n"
            )
        );
    }
}

#[test]
fn time_of_known_instants() {
    let cases = [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
        (951_825_600_007, "2000-02-29T12:00:00.007Z"),
        (946_684_799_999, "1999-12-31T23:59:59.999Z"),
        (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
        (1_795_510_862_345, "2026-11-24T09:01:02.345Z"),
    ];
    for (ms, want) in cases {
        let t = UNIX_EPOCH + Duration::from_millis(ms);
        let s = line_at(t, Level::Info, "t", format_args!("m"), NO_KVS);
        assert!(s.starts_with(&format!("{{\"time\":\"{want}\",")), "{s}");
        assert_eq!(usersvc::rfc3339::Rfc3339Millis::new(t).as_str(), want);
    }
    // Sub-millisecond precision is truncated, not rounded.
    let t = UNIX_EPOCH + Duration::from_nanos(1_999_999);
    assert_eq!(
        usersvc::rfc3339::Rfc3339Millis::new(t).to_string(),
        "1970-01-01T00:00:00.001Z"
    );
}

#[test]
fn escapes_quotes_backslashes_and_whitespace() {
    assert_eq!(
        line(
            format_args!("say \"hi\"\\ now\nnext\tcol\r\u{8}\u{c}"),
            NO_KVS
        ),
        format!(
            "{HEAD}{},\"target\":\"usersvc::test\"}}\n",
            r#""say \"hi\"\\ now\nnext\tcol\r\b\f""#
        )
    );
}

#[test]
fn escapes_every_c0_control() {
    let all: String = (0u8..0x20).map(char::from).collect();
    let want = concat!(
        r#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#,
        r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f""#
    );
    assert_eq!(
        line(format_args!("{all}"), NO_KVS),
        format!("{HEAD}{want},\"target\":\"usersvc::test\"}}\n")
    );
}

#[test]
fn non_ascii_passes_through_as_utf8() {
    assert_eq!(
        line(format_args!("café 日本 🦀 \u{7f} \u{2028}"), NO_KVS),
        format!("{HEAD}\"café 日本 🦀 \u{7f} \u{2028}\",\"target\":\"usersvc::test\"}}\n")
    );
}

#[test]
fn message_arguments_are_escaped_while_formatting() {
    assert_eq!(
        line(
            format_args!("user {} said {:?} at {}", 42, "hi\n", "a\"b"),
            NO_KVS
        ),
        format!(
            "{HEAD}{},\"target\":\"usersvc::test\"}}\n",
            r#""user 42 said \"hi\\n\" at a\"b""#
        )
    );
}

#[test]
fn target_is_escaped() {
    assert_eq!(
        line_at(now(), Level::Info, "we\"ird\n", format_args!("m"), NO_KVS),
        format!("{HEAD}\"m\",{}}}\n", r#""target":"we\"ird\n""#)
    );
}

struct Addr;
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("10.0.0.7:51234")
    }
}

#[test]
fn key_values_of_every_type() {
    let list = vec!["a", "b\"c"];
    let addr: std::net::SocketAddr = "[::1]:8080".parse().unwrap();
    let none: Option<u8> = None;
    let kvs: &[(&str, Value<'_>)] = &[
        ("str", Value::from("GET")),
        ("esc", Value::from("tab\there \"q\" \\ \u{1}")),
        ("unicode", Value::from("日本")),
        ("i", Value::from(-42i64)),
        ("u", Value::from(u64::MAX)),
        ("i128", Value::from(i128::MIN)),
        ("u128", Value::from(u128::MAX)),
        ("u16", Value::from(200u16)),
        ("f", Value::from(1.734f64)),
        ("f_whole", Value::from(2.0f64)),
        ("f_tiny", Value::from(1e-7f64)),
        ("f_huge", Value::from(1e300f64)),
        ("nan", Value::from(f64::NAN)),
        ("inf", Value::from(f64::INFINITY)),
        ("ninf", Value::from(f64::NEG_INFINITY)),
        ("t", Value::from(true)),
        ("f_bool", Value::from(false)),
        ("ch", Value::from('"')),
        ("null", Value::null()),
        ("opt", log::kv::ToValue::to_value(&none)),
        ("display", Value::from_display(&Addr)),
        ("socket", Value::from_display(&addr)),
        ("debug", Value::from_debug(&list)),
    ];
    let want = concat!(
        r#"{"time":"2026-11-24T09:01:02.345Z","level":"INFO","msg":"request completed","target":"usersvc::test","#,
        r#""str":"GET","esc":"tab\there \"q\" \\ \u0001","unicode":"日本","i":-42,"u":18446744073709551615,"#,
        r#""i128":-170141183460469231731687303715884105728,"u128":340282366920938463463374607431768211455,"#,
        r#""u16":200,"f":1.734,"f_whole":2.0,"f_tiny":1e-7,"f_huge":1e300,"nan":"NaN","inf":"inf","ninf":"-inf","#,
        r#""t":true,"f_bool":false,"ch":"\"","null":null,"opt":null,"display":"10.0.0.7:51234","#,
        r#""socket":"[::1]:8080","debug":"[\"a\", \"b\\\"c\"]"}"#,
        "\n"
    );
    assert_eq!(line(format_args!("request completed"), kvs), want);
}

#[test]
fn numbers_parse_back_as_numbers() {
    let kvs: &[(&str, Value<'_>)] = &[
        ("status", Value::from(503u16)),
        ("ms", Value::from(0.25f64)),
        ("neg", Value::from(-1i32)),
    ];
    let v: serde_json::Value = serde_json::from_str(&line(format_args!("m"), kvs)).unwrap();
    assert_eq!(v["status"], 503);
    assert_eq!(v["ms"], 0.25);
    assert_eq!(v["neg"], -1);
}

#[test]
fn keys_are_escaped() {
    let kvs: &[(&str, Value<'_>)] = &[("we\"ird key\n", Value::from(1u8))];
    assert_eq!(
        line(format_args!("m"), kvs),
        format!(
            "{HEAD}\"m\",\"target\":\"usersvc::test\",{}:1}}\n",
            r#""we\"ird key\n""#
        )
    );
}

#[test]
fn first_occurrence_of_a_name_wins() {
    let kvs: &[(&str, Value<'_>)] = &[
        ("msg", Value::from("spoof")),
        ("level", Value::from("ERROR")),
        ("time", Value::from(0)),
        ("target", Value::from("x")),
        ("a", Value::from(1)),
        ("a", Value::from(2)),
        ("request_id", Value::from("kept: no context entered")),
        ("b", Value::from(3)),
        (
            "tame",
            Value::from("same length and first letter as time: kept"),
        ),
        ("", Value::from("empty key")),
        ("", Value::from("repeated empty key")),
    ];
    assert_eq!(
        line(format_args!("m"), kvs),
        format!(
            "{HEAD}\"m\",\"target\":\"usersvc::test\",\"a\":1,\"request_id\":\"kept: no context entered\",\"b\":3,\"tame\":\"same length and first letter as time: kept\",\"\":\"empty key\"}}\n"
        )
    );
}

#[test]
fn many_keys_are_all_written() {
    let names: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let kvs: Vec<(&str, Value<'_>)> = names
        .iter()
        .map(|n| (n.as_str(), Value::from(1u8)))
        .collect();
    let v: serde_json::Value = serde_json::from_str(&line(format_args!("m"), &kvs[..])).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 4 + 40);
}

fn ctx(id: &str, trace: bool, span: bool) -> RequestContext {
    RequestContext {
        request_id: RequestId::parse(id).unwrap(),
        trace_id: trace.then_some([
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ]),
        span_id: span.then_some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]),
    }
}

const IDS: &str = r#","request_id":"req-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7""#;

#[test]
fn request_context_fields_inside_and_not_outside() {
    let kvs: &[(&str, Value<'_>)] = &[("status", Value::from(200u16))];
    let outside = format!("{HEAD}\"m\",\"target\":\"usersvc::test\",\"status\":200}}\n");
    let inside = format!("{HEAD}\"m\",\"target\":\"usersvc::test\"{IDS},\"status\":200}}\n");

    assert_eq!(line(format_args!("m"), kvs), outside);
    {
        let _guard = context::enter(ctx("req-1", true, true));
        assert_eq!(line(format_args!("m"), kvs), inside);
    }
    assert_eq!(line(format_args!("m"), kvs), outside);
}

#[test]
fn trace_and_span_are_optional() {
    let _guard = context::enter(ctx("req-2", false, false));
    assert_eq!(
        line(format_args!("m"), NO_KVS),
        format!("{HEAD}\"m\",\"target\":\"usersvc::test\",\"request_id\":\"req-2\"}}\n")
    );
    let _inner = context::enter(ctx("req-3", true, false));
    assert_eq!(
        line(format_args!("m"), NO_KVS),
        format!(
            "{HEAD}\"m\",\"target\":\"usersvc::test\",\"request_id\":\"req-3\",\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"}}\n"
        )
    );
}

#[test]
fn nested_contexts_restore_the_outer_one() {
    let _outer = context::enter(ctx("outer", false, false));
    {
        let _inner = context::enter(ctx("inner", false, false));
        assert!(line(format_args!("m"), NO_KVS).contains(r#""request_id":"inner""#));
    }
    assert!(line(format_args!("m"), NO_KVS).contains(r#""request_id":"outer""#));
}

#[test]
fn context_is_restored_after_a_caught_panic() {
    let result = std::panic::catch_unwind(|| {
        let _guard = context::enter(ctx("doomed", true, true));
        assert!(line(format_args!("m"), NO_KVS).contains("doomed"));
        panic!("handler failed");
    });
    assert!(result.is_err());
    assert!(context::current().is_none());
    assert!(!line(format_args!("m"), NO_KVS).contains("request_id"));
}

#[test]
fn context_is_per_thread() {
    let _guard = context::enter(ctx("main-thread", false, false));
    let other = std::thread::spawn(|| line(format_args!("m"), NO_KVS))
        .join()
        .unwrap();
    assert!(!other.contains("request_id"));
}

#[test]
fn context_fields_win_over_key_values() {
    let _guard = context::enter(ctx("req-1", true, true));
    let kvs: &[(&str, Value<'_>)] = &[
        ("request_id", Value::from("spoof")),
        ("span_id", Value::from("spoof")),
        ("ok", Value::from(true)),
    ];
    assert_eq!(
        line(format_args!("m"), kvs),
        format!("{HEAD}\"m\",\"target\":\"usersvc::test\"{IDS},\"ok\":true}}\n")
    );
}

#[test]
fn request_id_with_json_specials_is_escaped() {
    let _guard = context::enter(ctx(r#"a"b\c"#, false, false));
    let s = line(format_args!("m"), NO_KVS);
    assert!(s.contains(r#""request_id":"a\"b\\c""#), "{s}");
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["request_id"], r#"a"b\c"#);
}

#[test]
fn every_line_round_trips_its_message() {
    let ascii: String = (0u8..0x80).map(char::from).collect();
    let messages = [
        "",
        "plain",
        &ascii,
        "\\\"\\\\\"",
        "\u{0}\u{1f}\u{7f}\u{80}\u{9b}\u{2028}\u{2029}\u{feff}\u{fffd}",
        "é 日本 🦀 👩‍👩‍👧 \u{10ffff}",
        "line one\r\nline two\n\ttabbed",
        "</script><!--",
    ];
    for msg in messages {
        for kv_value in messages {
            let kvs: &[(&str, Value<'_>)] = &[("v", Value::from(kv_value))];
            let s = line(format_args!("{msg}"), kvs);
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            assert_eq!(v["msg"], msg);
            assert_eq!(v["v"], kv_value);
        }
    }
}

struct Panics;
impl fmt::Display for Panics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("partial \"")?;
        panic!("bad Display impl");
    }
}

struct Fails;
impl fmt::Display for Fails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("half\n")?;
        Err(fmt::Error)
    }
}

#[test]
fn a_failing_or_panicking_display_keeps_the_line_valid() {
    let kvs: &[(&str, Value<'_>)] = &[
        ("p", Value::from_display(&Panics)),
        ("f", Value::from_display(&Fails)),
        ("after", Value::from(1)),
    ];
    let s = line(format_args!("x {} y {}", Panics, Fails), kvs);
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["msg"], format!("x partial \"{PANIC_MARKER}"));
    assert_eq!(v["p"], format!("partial \"{PANIC_MARKER}"));
    assert_eq!(v["f"], "half\n");
    assert_eq!(v["after"], 1);
}

#[test]
fn io_errors_are_returned() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let args = 1;
    let err = write_json(
        &mut Broken,
        now(),
        &Record::builder().args(format_args!("m {args}")).build(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "disk full");
}
