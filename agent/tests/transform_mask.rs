//! Card and regex masking: table-driven cases a payments SRE would check,
//! and properties over random text.

use argus_agent::transform::mask::{MaskConfig, MaskRule, luhn_valid, mask_cards};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::{Span, span::Event};
use prometheus_client::registry::Registry;
use proptest::prelude::*;

const DEFAULT_FIRST: [bool; 10] = [
    false, false, true, true, true, true, true, false, false, false,
];
const ANY_FIRST: [bool; 10] = [true; 10];

fn masked(s: &str, first: &[bool; 10]) -> (String, usize) {
    let mut s = s.to_string();
    let n = mask_cards(&mut s, first);
    (s, n)
}

#[test]
fn card_numbers_table() {
    let cases: &[(&str, &str, &str)] = &[
        ("visa", "4111111111111111", "411111******1111"),
        ("visa 13 digits", "4222222222222", "422222***2222"),
        ("visa spaces", "4111 1111 1111 1111", "4111 11** **** 1111"),
        ("visa dashes", "4012-8888-8888-1881", "4012-88**-****-1881"),
        ("amex 4-6-5", "3782 822463 10005", "3782 82**** *0005"),
        ("amex plain", "371449635398431", "371449*****8431"),
        ("mastercard", "5555555555554444", "555555******4444"),
        (
            "mastercard 2-series",
            "2223003122003222",
            "222300******3222",
        ),
        ("discover", "6011111111111117", "601111******1117"),
        ("diners 14", "30569309025904", "305693****5904"),
        ("jcb", "3530111333300000", "353011******0000"),
        (
            "in a sentence",
            "paid with 4111 1111 1111 1111, thanks",
            "paid with 4111 11** **** 1111, thanks",
        ),
        (
            "followed by expiry year in the same run",
            "card 4111 1111 1111 1111 2030 ok",
            "card 4111 11** **** 1111 2030 ok",
        ),
        (
            "in a JSON body",
            r#"{"pan":"4111111111111111","amount":1200}"#,
            r#"{"pan":"411111******1111","amount":1200}"#,
        ),
        (
            "key=value",
            "pan=5105105105105100;",
            "pan=510510******5100;",
        ),
        (
            "two cards",
            "a=4111111111111111 b=5555555555554444",
            "a=411111******1111 b=555555******4444",
        ),
        ("19 digits", "4111111111111111110", "411111*********1110"),
        // Left alone:
        (
            "not Luhn-valid (order ID)",
            "4111111111111112",
            "4111111111111112",
        ),
        ("too short", "411111111111", "411111111111"),
        (
            "20-digit run",
            "41111111111111111113",
            "41111111111111111113",
        ),
        (
            "glued to letters (hex ID)",
            "ab4111111111111111cd",
            "ab4111111111111111cd",
        ),
        (
            "epoch millis (Luhn-valid)",
            r#"{"ts":1712345678907}"#,
            r#"{"ts":1712345678907}"#,
        ),
        (
            "order ID starting with 1 (Luhn-valid)",
            "order 1234567812345605",
            "order 1234567812345605",
        ),
        (
            "double space breaks a run",
            "4111  1111 1111 1111",
            "4111  1111 1111 1111",
        ),
        (
            "few digits fast path",
            "no digits here at all",
            "no digits here at all",
        ),
    ];
    for (name, input, want) in cases {
        let (got, n) = masked(input, &DEFAULT_FIRST);
        assert_eq!(got, *want, "{name}");
        assert_eq!(n > 0, input != want, "{name}: count {n}");
    }
}

#[test]
fn first_digit_filter_can_be_widened() {
    let (got, n) = masked("order 1234567812345605", &ANY_FIRST);
    assert_eq!(got, "order 123456******5605");
    assert_eq!(n, 1);
}

fn rules() -> MaskConfig {
    MaskConfig {
        rules: vec![
            MaskRule {
                name: "email".into(),
                pattern: r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}".into(),
                replacement: "<email>".into(),
            },
            MaskRule {
                name: "bearer".into(),
                pattern: r"(?i)(bearer\s+)[A-Za-z0-9._~+/-]+=*".into(),
                replacement: "${1}****".into(),
            },
            MaskRule {
                name: "iban".into(),
                pattern: r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b".into(),
                replacement: "<iban>".into(),
            },
        ],
        ..Default::default()
    }
}

fn encode(reg: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, reg).unwrap();
    s
}

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    }
}

fn text(v: &Option<AnyValue>) -> &str {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

#[test]
fn regex_rules_replace_and_count_per_rule() {
    let mut reg = Registry::default();
    let mask = rules().build(&mut reg).unwrap();
    let mut s = "user bob@example.com and ann@example.org sent Authorization: Bearer eyJhbGci.abc-123 to DE89 3704 0044 0532 0130 00".to_string();
    let n = mask.string(&mut s);
    assert_eq!(
        s,
        "user <email> and <email> sent Authorization: Bearer **** to <iban>"
    );
    assert_eq!(n, 4);
    let metrics = encode(&reg);
    assert!(
        metrics.contains(r#"masked_values_total{rule="email"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"masked_values_total{rule="bearer"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"masked_values_total{rule="iban"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"masked_values_total{rule="card"} 0"#),
        "{metrics}"
    );

    let mut clean = "nothing to see".to_string();
    assert_eq!(mask.string(&mut clean), 0);
    assert_eq!(clean, "nothing to see");
}

#[test]
fn bodies_attributes_nested_values_and_spans_are_masked() {
    let mut reg = Registry::default();
    let mask = rules().build(&mut reg).unwrap();
    let mut record = LogRecord {
        body: Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("msg", string("charged 4111 1111 1111 1111")),
                    kv(
                        "cards",
                        Some(AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue {
                                values: vec![string("5555555555554444").unwrap()],
                            })),
                        }),
                    ),
                ],
            })),
        }),
        attributes: vec![
            kv("customer.email", string("bob@example.com")),
            kv(
                "amount",
                Some(AnyValue {
                    value: Some(Value::IntValue(4111111111111111)),
                }),
            ),
        ],
        ..Default::default()
    };
    mask.log_record(&mut record);
    let Some(Value::KvlistValue(body)) = record.body.as_ref().unwrap().value.as_ref() else {
        panic!()
    };
    assert_eq!(text(&body.values[0].value), "charged 4111 11** **** 1111");
    let Some(Value::ArrayValue(arr)) = body.values[1].value.as_ref().unwrap().value.as_ref() else {
        panic!()
    };
    assert_eq!(text(&Some(arr.values[0].clone())), "555555******4444");
    assert_eq!(text(&record.attributes[0].value), "<email>");
    // Integers are not strings: masking never changes a value's type.
    assert_eq!(
        record.attributes[1].value.as_ref().unwrap().value,
        Some(Value::IntValue(4111111111111111))
    );

    let mut span = Span {
        attributes: vec![kv("payment.pan", string("378282246310005"))],
        events: vec![Event {
            attributes: vec![kv(
                "exception.message",
                string("declined card 6011111111111117"),
            )],
            ..Default::default()
        }],
        ..Default::default()
    };
    mask.span(&mut span);
    assert_eq!(text(&span.attributes[0].value), "378282*****0005");
    assert_eq!(
        text(&span.events[0].attributes[0].value),
        "declined card 601111******1117"
    );
    assert!(encode(&reg).contains(r#"masked_values_total{rule="card"} 4"#));
}

#[test]
fn config_problems_name_every_bad_rule() {
    let cfg = MaskConfig {
        card_first_digits: "4x".into(),
        rules: vec![
            MaskRule {
                name: "card".into(),
                pattern: "x".into(),
                replacement: "".into(),
            },
            MaskRule {
                name: "bad name!".into(),
                pattern: "(".into(),
                replacement: "".into(),
            },
            MaskRule {
                name: "dup".into(),
                pattern: "a*".into(),
                replacement: "".into(),
            },
            MaskRule {
                name: "dup".into(),
                pattern: "b".into(),
                replacement: "".into(),
            },
        ],
        ..Default::default()
    };
    let p = cfg.problems("transform.mask");
    let has = |prefix: &str| p.iter().any(|m| m.starts_with(prefix));
    assert!(has("transform.mask.card_first_digits:"), "{p:?}");
    assert!(
        has("transform.mask.rules[0].name: \"card\" is reserved"),
        "{p:?}"
    );
    assert!(has("transform.mask.rules[1].name:"), "{p:?}");
    assert!(
        has("transform.mask.rules[1].pattern: invalid regex"),
        "{p:?}"
    );
    assert!(
        has("transform.mask.rules[2].pattern: matches the empty string"),
        "{p:?}"
    );
    assert!(
        has("transform.mask.rules[3].name: \"dup\" is used by an earlier rule"),
        "{p:?}"
    );
    assert!(MaskConfig::default().problems("m").is_empty());
    assert!(rules().problems("m").is_empty());
}

// ---- properties ----

/// Maximal digit runs as the module defines them: digit groups joined by
/// single ' ' or '-', not touching an ASCII letter or digit at either end.
fn runs(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let left_ok = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let mut j = i;
        let mut digits = String::new();
        loop {
            while j < b.len() && b[j].is_ascii_digit() {
                digits.push(b[j] as char);
                j += 1;
            }
            if j + 1 < b.len() && (b[j] == b' ' || b[j] == b'-') && b[j + 1].is_ascii_digit() {
                j += 1;
            } else {
                break;
            }
        }
        let right_ok = j == b.len() || !b[j].is_ascii_alphanumeric();
        if left_ok && right_ok {
            out.push(digits);
        }
        i = j;
    }
    out
}

fn card_like(run: &str, first: &[bool; 10]) -> bool {
    (13..=19).contains(&run.len())
        && first[usize::from(run.as_bytes()[0] - b'0')]
        && luhn_valid(run.bytes())
}

/// A Luhn-valid number of `len` digits from a random prefix.
fn luhn_number(prefix: Vec<u8>) -> String {
    let mut digits: Vec<u8> = prefix.iter().map(|d| b'0' + d % 10).collect();
    for check in b'0'..=b'9' {
        digits.push(check);
        if luhn_valid(digits.iter().copied()) {
            break;
        }
        digits.pop();
    }
    String::from_utf8(digits).unwrap()
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        // A valid card, plain or grouped by spaces or dashes.
        (prop::collection::vec(0u8..10, 12..19), 0usize..3).prop_map(|(p, style)| {
            let n = luhn_number(p);
            match style {
                0 => n,
                s => {
                    let sep = if s == 1 { " " } else { "-" };
                    n.as_bytes()
                        .chunks(4)
                        .map(|c| std::str::from_utf8(c).unwrap())
                        .collect::<Vec<_>>()
                        .join(sep)
                }
            }
        }),
        "[0-9]{1,22}",
        "[a-zA-Z]{1,3}",
        Just(" ".to_string()),
        Just("-".to_string()),
        Just("  ".to_string()),
        "[,;:=\"{}*./]",
        "[é€😀]",
    ]
}

fn text_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..24).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// With every first digit allowed, no Luhn-valid 13–19 digit run is left.
    #[test]
    fn no_luhn_valid_run_survives(input in text_strategy()) {
        let (out, _) = masked(&input, &ANY_FIRST);
        for run in runs(&out) {
            prop_assert!(!card_like(&run, &ANY_FIRST), "{run:?} left in {out:?} (from {input:?})");
        }
        prop_assert_eq!(out.len(), input.len(), "masking keeps the length");
        for (a, b) in input.chars().zip(out.chars()) {
            prop_assert!(a == b || (a.is_ascii_digit() && b == '*'), "only digits change");
        }
        let (again, n) = masked(&out, &ANY_FIRST);
        prop_assert_eq!(n, 0, "idempotent");
        prop_assert_eq!(again, out);
    }

    /// With the default first digits, no card-like run starting 2–6 is left.
    #[test]
    fn no_payment_card_survives_with_defaults(input in text_strategy()) {
        let (out, _) = masked(&input, &DEFAULT_FIRST);
        for run in runs(&out) {
            prop_assert!(!card_like(&run, &DEFAULT_FIRST), "{run:?} left in {out:?}");
        }
    }

    /// Text without a Luhn-valid run is returned untouched.
    #[test]
    fn non_cards_are_untouched(input in "[0-9 a-z-]{0,60}") {
        let (out, n) = masked(&input, &ANY_FIRST);
        if n == 0 {
            prop_assert_eq!(out, input);
        }
    }
}
