//! The real logger with `LOG_FORMAT=text` (its own process: one global logger per process).

use std::io;
use std::sync::{Arc, Mutex};

use log::LevelFilter;
use usersvc::logging::{self, LogFormat, LogSettings};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn text_lines_through_the_installed_logger() {
    let buf = Shared::default();
    logging::init_with_writer(
        LogSettings {
            level: LevelFilter::Warn,
            format: LogFormat::Text,
        },
        Box::new(buf.clone()),
    )
    .unwrap();
    assert_eq!(logging::level(), LevelFilter::Warn);
    log::info!(target: "usersvc::main", "hidden");
    log::warn!(target: "usersvc::main", addr = ":8080"; "listening on {}", "public");
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let (time, rest) = text.split_at(24);
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{text}");
    assert_eq!(
        rest,
        " WARN  usersvc::main: listening on public addr=:8080\n"
    );
}

#[test]
fn log_format_parses_config_values() {
    assert_eq!("json".parse(), Ok(LogFormat::Json));
    assert_eq!("TEXT".parse(), Ok(LogFormat::Text));
    assert!("yaml".parse::<LogFormat>().is_err());
    assert_eq!(LogFormat::default().to_string(), "json");
}
