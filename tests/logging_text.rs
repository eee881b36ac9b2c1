//! Golden tests for the text (terminal) line format.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::kv::Value;
use log::{Level, Record};
use usersvc::logging::context::{self, RequestContext, RequestId};
use usersvc::logging::format::write_text;

/// 2026-11-24T09:01:02.345Z
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_795_510_862_345)
}

fn line_lvl(level: Level, args: fmt::Arguments<'_>, kvs: &[(&str, Value<'_>)]) -> String {
    let record = Record::builder()
        .level(level)
        .target("usersvc::http")
        .args(args)
        .key_values(&kvs)
        .build();
    let mut out = Vec::new();
    write_text(&mut out, now(), &record).unwrap();
    let s = String::from_utf8(out).expect("valid UTF-8");
    assert!(
        s.ends_with('\n') && s.matches('\n').count() == 1,
        "one line: {s:?}"
    );
    s
}

fn line(args: fmt::Arguments<'_>, kvs: &[(&str, Value<'_>)]) -> String {
    line_lvl(Level::Info, args, kvs)
}

const NO_KVS: &[(&str, Value<'static>)] = &[];

#[test]
fn levels_are_padded() {
    assert_eq!(
        line_lvl(Level::Info, format_args!("listening"), NO_KVS),
        "2026-11-24T09:01:02.345Z INFO  usersvc::http: listening\n"
    );
    assert_eq!(
        line_lvl(Level::Error, format_args!("boom"), NO_KVS),
        "2026-11-24T09:01:02.345Z ERROR usersvc::http: boom\n"
    );
    assert_eq!(
        line_lvl(Level::Warn, format_args!("hm"), NO_KVS),
        "2026-11-24T09:01:02.345Z WARN  usersvc::http: hm\n"
    );
}

struct Addr;
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("10.0.0.7:51234")
    }
}

#[test]
fn request_completed_with_context() {
    let _guard = context::enter(RequestContext {
        request_id: RequestId::parse("req-1").unwrap(),
        trace_id: Some([0xab; 16]),
        span_id: Some([0x01; 8]),
    });
    let kvs: &[(&str, Value<'_>)] = &[
        ("method", Value::from("GET")),
        ("path", Value::from("/api/v1/users/42")),
        ("route", Value::from("/api/v1/users/{id}")),
        ("status", Value::from(200u16)),
        ("duration_ms", Value::from(1.734f64)),
        ("bytes", Value::from(512u64)),
        ("remote_addr", Value::from_display(&Addr)),
        ("request_id", Value::from("spoof")),
    ];
    assert_eq!(
        line(format_args!("request completed"), kvs),
        concat!(
            "2026-11-24T09:01:02.345Z INFO  usersvc::http: request completed method=GET ",
            "path=/api/v1/users/42 route=/api/v1/users/{id} status=200 duration_ms=1.734 bytes=512 ",
            "remote_addr=10.0.0.7:51234 request_id=req-1 trace_id=abababababababababababababababab ",
            "span_id=0101010101010101\n"
        )
    );
}

#[test]
fn values_are_quoted_only_when_needed() {
    let long = "x y ".repeat(100);
    let kvs: &[(&str, Value<'_>)] = &[
        ("empty", Value::from("")),
        ("space", Value::from("a b")),
        ("eq", Value::from("a=b")),
        ("quote", Value::from("say \"hi\" \\")),
        ("nl", Value::from("a\nb")),
        ("bare", Value::from("é日本🦀")),
        ("ok", Value::from(true)),
        ("neg", Value::from(-3i64)),
        ("nan", Value::from(f64::NAN)),
        ("null", Value::null()),
        ("disp", Value::from_display(&"two words")),
        ("long", Value::from_display(&long)),
    ];
    let want = format!(
        "2026-11-24T09:01:02.345Z INFO  usersvc::http: m empty=\"\" space=\"a b\" eq=\"a=b\" {} nl=\"a\\nb\" bare=é日本🦀 ok=true neg=-3 nan=NaN null=null disp=\"two words\" long=\"{}\"\n",
        r#"quote="say \"hi\" \\""#,
        long
    );
    assert_eq!(line(format_args!("m"), kvs), want);
}

#[test]
fn message_controls_are_escaped_so_a_record_is_one_line() {
    assert_eq!(
        line(format_args!("evil\nINFO fake\r\u{1b}[31mred\u{9b}\t\"q\""), NO_KVS),
        "2026-11-24T09:01:02.345Z INFO  usersvc::http: evil\\nINFO fake\\r\\u{1b}[31mred\\u{9b}\\t\"q\"\n"
    );
}

#[test]
fn no_context_fields_outside_a_request() {
    assert!(!line(format_args!("m"), NO_KVS).contains("request_id"));
}
