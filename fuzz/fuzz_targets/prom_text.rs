//! Any bytes, read as a Prometheus or OpenMetrics exposition, never panic the
//! parser or the OTLP translation (including the start-time cache across two
//! scrapes of the same text).
#![no_main]

use argus_agent::sources::scrape::exposition::{Format, parse};
use argus_agent::sources::scrape::translation::{StartTimes, translate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let target = [("job".to_string(), "fuzz".to_string())];
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let exp = parse(text, format);
        assert!(exp.errors.len() <= exp.error_count);
        let mut starts = StartTimes::default();
        let _ = translate(&exp, &target, 1, &mut starts);
        let _ = translate(&exp, &[], 2, &mut starts);
    }
});
